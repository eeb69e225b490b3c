import time

import pytest
import torch
from torch import nn

from robotrl.policies.encoders import (
    ImageEncoder,
    ObservationEncoder,
    RandomCrop,
    ResNet18GN,
    SpatialSoftmax,
    StateEncoder,
)

CAMERAS = {"observation.images.top": (48, 64, 3), "observation.images.wrist": (40, 40, 3)}


def _images(shapes, b, t, seed=0):
    g = torch.Generator().manual_seed(seed)
    return {
        k: torch.randint(0, 256, (b, t, *s), dtype=torch.uint8, generator=g)
        for k, s in shapes.items()
    }


@pytest.mark.parametrize("n_cameras", [1, 2])
@pytest.mark.parametrize("t", [1, 2])
def test_image_encoder_shapes(n_cameras, t):
    shapes = dict(list(CAMERAS.items())[:n_cameras])
    enc = ImageEncoder(shapes, feature_dim=16, base_width=8)
    assert enc.out_dim == 16 * n_cameras
    batch = _images(shapes, 3, t)
    batch["observation.state"] = torch.zeros(3, t, 4)  # other batch keys are ignored
    for mode in (enc.train(), enc.eval()):
        out = mode(batch)
        assert out.shape == (3, t, 16 * n_cameras) and out.dtype == torch.float32
        assert torch.isfinite(out).all()


def test_observation_encoder_shapes_and_variants():
    enc = ObservationEncoder(5, CAMERAS, state_feature_dim=32, feature_dim=16, base_width=8)
    assert enc.out_dim == 32 + 2 * 16
    out = enc(torch.randn(2, 2, 5), _images(CAMERAS, 2, 2))
    assert out.shape == (2, 2, enc.out_dim)

    raw = ObservationEncoder(5, CAMERAS, state_feature_dim=None, feature_dim=16, base_width=8)
    state = torch.randn(2, 2, 5)
    out = raw(state, _images(CAMERAS, 2, 2))
    assert raw.out_dim == 5 + 32 and torch.equal(out[..., :5], state)

    state_only = ObservationEncoder(5, None, state_feature_dim=8)
    assert state_only(torch.randn(4, 1, 5)).shape == (4, 1, 8) and state_only.out_dim == 8
    image_only = ObservationEncoder(0, CAMERAS, feature_dim=16, base_width=8)
    assert image_only(images=_images(CAMERAS, 1, 2)).shape == (1, 2, 32)

    assert StateEncoder(3, 7, activation="relu")(torch.randn(2, 4, 3)).shape == (2, 4, 7)


def test_float_input_matches_uint8():
    shapes = {"cam": (40, 40, 3)}
    enc = ImageEncoder(shapes, feature_dim=8, base_width=8).eval()
    images = _images(shapes, 2, 2)
    as_float = {"cam": images["cam"].float() / 255}
    torch.testing.assert_close(enc(images), enc(as_float), rtol=1e-4, atol=1e-5)


def test_bad_inputs_raise():
    enc = ObservationEncoder(5, CAMERAS, feature_dim=8, base_width=8)
    images = _images(CAMERAS, 2, 2)
    with pytest.raises(KeyError, match="wrist"):
        enc(torch.randn(2, 2, 5), {"observation.images.top": images["observation.images.top"]})
    with pytest.raises(ValueError, match="B, T, H, W, 3"):
        enc(torch.randn(2, 2, 5), {k: v[:, 0] for k, v in images.items()})
    with pytest.raises(ValueError, match="too small"):
        ImageEncoder({"cam": (36, 36, 3)}, base_width=8)  # 0.9 crop: 32 px -> 1x1 features
    with pytest.raises(ValueError, match="48, 64"):
        bad = dict(images, **{"observation.images.top": images["observation.images.wrist"]})
        enc(torch.randn(2, 2, 5), bad)
    with pytest.raises(ValueError, match="state"):
        enc(torch.randn(2, 2, 4), images)
    with pytest.raises(ValueError, match="disagree"):
        enc(torch.randn(2, 3, 5), images)


def _position_images(b, t, h, w):
    """Every pixel holds its own (row, col), so a crop's content says where it was cut."""
    rows = torch.arange(h)[:, None].expand(h, w)
    cols = torch.arange(w)[None, :].expand(h, w)
    image = torch.stack([rows, cols, torch.zeros_like(rows)], dim=-1)  # [H, W, 3]
    return image.expand(b, t, h, w, 3).clone()


def test_random_crop_train_differs_eval_is_center():
    crop = RandomCrop(40, 50, crop_ratio=0.8)
    assert (crop.crop_height, crop.crop_width) == (32, 40)
    images = _position_images(32, 2, 40, 50)

    torch.manual_seed(0)
    first = crop.train()(images)
    second = crop(images)
    assert first.shape == (32, 2, 32, 40, 3)
    corners = first[:, :, 0, 0, :2]  # (top, left) of each crop
    assert len({tuple(c) for c in corners[:, 0].tolist()}) > 10  # differ across samples
    assert torch.equal(corners[:, 0], corners[:, 1])  # one window per sample, over all T
    assert not torch.equal(first, second)  # and across calls
    # each crop is a contiguous window of the source
    expected = images[:, :, :32, :40].clone()
    expected[..., 0] += corners[:, :, None, None, 0]
    expected[..., 1] += corners[:, :, None, None, 1]
    assert torch.equal(first, expected)
    assert corners[..., 0].max() <= 8 and corners[..., 1].max() <= 10

    torch.manual_seed(0)
    assert torch.equal(crop(images), first)  # reproducible under manual_seed

    crop.eval()
    center = crop(images)
    assert torch.equal(center, images[:, :, 4:36, 5:45])
    assert torch.equal(crop(images), center)
    # 4-D input works too
    assert crop.train()(images[:, 0]).shape == (32, 32, 40, 3)


def test_image_encoder_train_random_eval_deterministic():
    shapes = {"cam": (40, 40, 3)}
    enc = ImageEncoder(shapes, feature_dim=8, base_width=8)
    images = _images(shapes, 4, 2)
    enc.train()
    assert not torch.allclose(enc(images), enc(images))
    enc.eval()
    with torch.no_grad():
        out = enc(images)
        assert torch.equal(enc(images), out)
        # eval = the CNN on the center crop (36x36 of 40x40)
        center = images["cam"][:, :, 2:38, 2:38]
        no_crop = ImageEncoder({"cam": (36, 36, 3)}, feature_dim=8, base_width=8, crop_ratio=1.0)
        no_crop.load_state_dict(enc.state_dict())
        torch.testing.assert_close(no_crop.eval()({"cam": center}), out)


def test_deterministic_given_seed():
    def run():
        torch.manual_seed(3)
        enc = ObservationEncoder(4, CAMERAS, feature_dim=8, base_width=8).train()
        out = enc(torch.ones(2, 2, 4), _images(CAMERAS, 2, 2))
        out.sum().backward()
        return out, [p.grad for p in enc.parameters()]

    (out1, grads1), (out2, grads2) = run(), run()
    assert torch.equal(out1, out2)
    assert all(torch.equal(a, b) for a, b in zip(grads1, grads2))


def _blob_map(h, w, row, col, amplitude=10.0, sigma=1.0):
    r = torch.arange(h, dtype=torch.float32)[:, None]
    c = torch.arange(w, dtype=torch.float32)[None, :]
    return amplitude * torch.exp(-((r - row) ** 2 + (c - col) ** 2) / (2 * sigma**2))


def test_spatial_softmax_finds_blob():
    h, w = 21, 31
    layer = SpatialSoftmax(1, num_keypoints=None, temperature=0.1)
    for row, col in [(3, 5), (10, 15), (17, 28)]:
        maps = _blob_map(h, w, row, col)[None, None]
        x, y = layer(maps)[0].tolist()
        assert x == pytest.approx(-1 + 2 * col / (w - 1), abs=1e-3)
        assert y == pytest.approx(-1 + 2 * row / (h - 1), abs=1e-3)

    # through the 1x1 conv: identity weights, so keypoint k tracks the blob in channel k
    layer = SpatialSoftmax(3, num_keypoints=3, temperature=0.1)
    assert layer.out_dim == 6
    with torch.no_grad():
        layer.keypoints.weight.copy_(torch.eye(3)[:, :, None, None])
        layer.keypoints.bias.zero_()
    maps = torch.stack([_blob_map(h, w, 2, 2), _blob_map(h, w, 10, 15), _blob_map(h, w, 18, 30)])
    keypoints = layer(maps[None]).view(3, 2)
    expected = torch.tensor([[-1 + 4 / 30, -0.8], [0.0, 0.0], [1.0, 0.8]])
    torch.testing.assert_close(keypoints, expected, atol=1e-3, rtol=0)
    # a flat map gives the image centre
    assert layer(torch.zeros(1, 3, h, w)).abs().max() < 1e-6


def test_gradients_reach_every_parameter():
    enc = ObservationEncoder(5, CAMERAS, feature_dim=8, base_width=8).train()
    out = enc(torch.randn(3, 2, 5), _images(CAMERAS, 3, 2))
    (out**2).mean().backward()
    for name, p in enc.named_parameters():
        assert p.grad is not None, name
        assert p.grad.abs().sum() > 0, name


def test_groupnorm_not_batchnorm():
    for enc in (
        ObservationEncoder(5, CAMERAS, feature_dim=8, base_width=8),
        ObservationEncoder(5, CAMERAS, feature_dim=8, share_backbone=True),
        ResNet18GN(64),
    ):
        modules = list(enc.modules())
        assert not any(isinstance(m, nn.modules.batchnorm._NormBase) for m in modules)
        assert not any("BatchNorm" in type(m).__name__ for m in modules)
        norms = [m for m in modules if isinstance(m, nn.GroupNorm)]
        assert norms and all(m.num_groups == max(1, m.num_channels // 16) for m in norms)


def test_resnet_structure_and_shared_backbone():
    net = ResNet18GN(64)
    convs = [m for m in net.modules() if isinstance(m, nn.Conv2d) and m.kernel_size != (1, 1)]
    assert len(convs) == 17  # ResNet-18: stem + 8 blocks x 2 (the 18th layer is the head)
    assert net.out_channels == 512
    assert 11.0e6 < sum(p.numel() for p in net.parameters()) < 11.3e6  # torchvision: 11.18M
    assert net(torch.rand(2, 3, 96, 96)).shape == (2, 512, 3, 3)

    shapes = {"a": (40, 40, 3), "b": (40, 40, 3)}
    shared = ImageEncoder(shapes, feature_dim=8, base_width=8, share_backbone=True)
    separate = ImageEncoder(shapes, feature_dim=8, base_width=8)
    n_shared = sum(p.numel() for p in shared.parameters())
    assert 2 * n_shared == sum(p.numel() for p in separate.parameters())
    images = _images(shapes, 2, 1)
    images["b"] = images["a"].clone()
    out = shared.eval()(images)
    torch.testing.assert_close(out[..., :8], out[..., 8:])


def _blob_images(n, size, generator):
    """uint8 [n, 1, size, size, 3] images, dark with one bright blob; target: its (x, y)."""
    centres = torch.rand(n, 2, generator=generator) * (size - 12) + 6  # (row, col)
    r = torch.arange(size, dtype=torch.float32)[None, :, None]
    c = torch.arange(size, dtype=torch.float32)[None, None, :]
    d2 = (r - centres[:, 0, None, None]) ** 2 + (c - centres[:, 1, None, None]) ** 2
    gray = 255 * torch.exp(-d2 / (2 * 3.0**2))
    images = gray[:, None, :, :, None].expand(n, 1, size, size, 3).to(torch.uint8)
    xy = (centres.flip(-1) / (size - 1)) * 2 - 1
    return images, xy


def test_overfits_blob_position():
    torch.manual_seed(0)
    size = 64
    images, xy = _blob_images(32, size, torch.Generator().manual_seed(0))
    enc = ImageEncoder({"cam": (size, size, 3)}, feature_dim=32, base_width=8, crop_ratio=1.0)
    head = nn.Linear(32, 2)
    params = list(enc.parameters()) + list(head.parameters())
    optimizer = torch.optim.Adam(params, lr=3e-3)

    def loss_fn():
        return ((head(enc({"cam": images})[:, 0]) - xy) ** 2).mean()

    start = time.perf_counter()
    with torch.no_grad():
        initial = loss_fn().item()
    for _ in range(150):
        optimizer.zero_grad()
        loss = loss_fn()
        loss.backward()
        optimizer.step()
        if loss.item() < initial / 20:
            break
    with torch.no_grad():
        final = loss_fn().item()
    elapsed = time.perf_counter() - start
    assert final < initial / 5, (initial, final)
    assert elapsed < 20


@pytest.mark.slow
def test_benchmark_default_width():
    """fwd+bwd of 64 x 2 frames x 2 cameras of 96x96 on 2 threads (~120-135 ms on a quiet
    2-core machine; run alone: OpenMP threads slow down many-fold when cores are shared)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        torch.manual_seed(0)
        shapes = {"a": (96, 96, 3), "b": (96, 96, 3)}
        enc = ImageEncoder(shapes).train()
        images = _images(shapes, 64, 2)
        times = []
        for _ in range(6):
            start = time.perf_counter()
            enc(images).square().mean().backward()
            times.append(time.perf_counter() - start)
        best = min(times[1:])
        print(f"ImageEncoder fwd+bwd: best {best * 1e3:.0f} ms")
        assert best < 0.5
    finally:
        torch.set_num_threads(threads)
