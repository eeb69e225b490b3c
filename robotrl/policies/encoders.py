"""Observation encoders for diffusion/consistency policies, in the style of Diffusion Policy
(Chi et al., 2023): per camera a ResNet-18 with GroupNorm, trained from scratch, whose global
average pool is replaced by a spatial-softmax keypoint layer (Levine et al., 2016), plus a
random-crop augmentation; a small MLP for the (normalized) state vector.

Shapes follow the dataset windows (`robotrl.data.windows.WindowDataset`): images arrive as
uint8 [B, T, H, W, 3] (batch, observation history, HWC) and states as float [B, T, S]; every
encoder returns [B, T, D] features, which the policy flattens over T into its condition.

Randomness (initialization and the train-time crops) comes from torch's global generator, so
everything is reproducible under `torch.manual_seed`.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn
from torch.nn import functional as F

# Fixed ImageNet statistics: the network is trained from scratch, so these only centre the
# input roughly; GroupNorm after the stem takes care of the rest.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def _group_norm(channels: int) -> nn.GroupNorm:
    """GroupNorm with 16 channels per group (Diffusion Policy's replacement for BatchNorm)."""
    return nn.GroupNorm(max(1, channels // 16), channels)


class BasicBlock(nn.Module):
    """The ResNet basic block: two 3x3 convs with a (projected, if needed) skip connection."""

    def __init__(self, c_in: int, c_out: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False)
        self.norm1 = _group_norm(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1, bias=False)
        self.norm2 = _group_norm(c_out)
        self.skip = (
            nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False), _group_norm(c_out))
            if stride != 1 or c_in != c_out
            else nn.Identity()
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.norm1(self.conv1(x)))
        out = self.norm2(self.conv2(out))
        return F.relu(out + self.skip(x))


class ResNet18GN(nn.Module):
    """ResNet-18 (basic blocks x [2, 2, 2, 2]) with GroupNorm, without the pooling/fc head.

    Channels per stage are `base_width * (1, 2, 4, 8)`; 64 gives the standard ResNet-18
    (11.2M parameters), the default 12 (0.4M per camera) keeps training CPU-friendly: a
    batch of 64 x 2 frames x 2 cameras of 96x96 (0.9 crop) takes ~120-135 ms forward +
    backward on 2 CPU threads (16: ~165 ms, 8: ~80 ms, 24: ~330 ms).
    Input: images [N, 3, H, W], float in [0, 1] or uint8 in [0, 255], normalized inside with
    the fixed ImageNet mean/std. Any memory format works; channels_last (what a permuted HWC
    batch is) is the fast one for the CPU conv kernels (~1.5x), see `ImageEncoder`.
    Output: feature maps [N, 8 * base_width, ceil(H/32), ceil(W/32)] (3x3 for an 86 crop).
    """

    def __init__(self, base_width: int = 12, in_channels: int = 3):
        super().__init__()
        widths = [base_width * m for m in (1, 2, 4, 8)]
        self.out_channels = widths[-1]
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), False)
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, widths[0], 7, stride=2, padding=3, bias=False),
            _group_norm(widths[0]),
            nn.ReLU(),
            nn.MaxPool2d(3, stride=2, padding=1),
        )
        stages, c_in = [], widths[0]
        for i, c_out in enumerate(widths):
            stride = 1 if i == 0 else 2
            stages.append(nn.Sequential(BasicBlock(c_in, c_out, stride), BasicBlock(c_out, c_out)))
            c_in = c_out
        self.stages = nn.Sequential(*stages)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # (x - mean) / std as one fused multiply-add; uint8 input is scaled by 1/255 on the way.
        scale = 1.0 / (255.0 * self.std) if x.dtype == torch.uint8 else 1.0 / self.std
        x = torch.addcmul(-self.mean / self.std, x.to(scale.dtype), scale)
        return self.stages(self.stem(x))


class SpatialSoftmax(nn.Module):
    """Keypoints from feature maps: a 1x1 conv to K maps, a softmax over each map's H*W
    positions (with a learnable temperature), and the expected x/y image coordinate under it.

    Input [N, C, H, W] -> output [N, 2K] ordered (x_0, y_0, x_1, y_1, ...), coordinates in
    [-1, 1] with x along the width (left = -1) and y along the height (top = -1).
    `num_keypoints=None` skips the 1x1 conv and uses the C input maps directly (K = C).
    """

    def __init__(self, in_channels: int, num_keypoints: int | None = 32, temperature: float = 1.0):
        super().__init__()
        self.num_keypoints = in_channels if num_keypoints is None else num_keypoints
        self.keypoints = (
            nn.Identity() if num_keypoints is None else nn.Conv2d(in_channels, num_keypoints, 1)
        )
        self.log_temperature = nn.Parameter(torch.tensor(float(temperature)).log())

    @property
    def out_dim(self) -> int:
        return 2 * self.num_keypoints

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        maps = self.keypoints(features)
        n, k, h, w = maps.shape
        attention = torch.softmax(maps.flatten(2) / self.log_temperature.exp(), dim=-1)
        ys = torch.linspace(-1.0, 1.0, h, device=maps.device, dtype=maps.dtype)
        xs = torch.linspace(-1.0, 1.0, w, device=maps.device, dtype=maps.dtype)
        grid_y, grid_x = torch.meshgrid(ys, xs, indexing="ij")
        grid = torch.stack([grid_x.flatten(), grid_y.flatten()], dim=-1)  # [H*W, 2]
        return (attention @ grid).reshape(n, 2 * k)


class RandomCrop(nn.Module):
    """Diffusion Policy's crop augmentation on HWC images [N, H, W, C] or [B, T, H, W, C].

    Training (`self.training`): a random `crop_ratio` window per sample, vectorized (one
    gather), with the same window for all T frames of a sample so the augmentation does not
    invent motion across the observation history (Diffusion Policy crops each frame
    independently). Eval: the center window of the same size. Works on uint8 as well as float.
    """

    def __init__(self, height: int, width: int, crop_ratio: float = 0.9):
        super().__init__()
        if not 0.0 < crop_ratio <= 1.0:
            raise ValueError(f"crop_ratio must be in (0, 1], got {crop_ratio}")
        self.height, self.width = height, width
        self.crop_height = max(1, round(crop_ratio * height))
        self.crop_width = max(1, round(crop_ratio * width))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        *lead, h, w, c = images.shape
        if images.ndim < 4 or (h, w) != (self.height, self.width):
            raise ValueError(
                f"expected images [N, {self.height}, {self.width}, C] or [B, T, {self.height}, {self.width}, C], "
                f"got {tuple(images.shape)}"
            )
        ch, cw = self.crop_height, self.crop_width
        if not self.training:
            top, left = (h - ch) // 2, (w - cw) // 2
            return images[..., top : top + ch, left : left + cw, :]
        b = lead[0]
        top = torch.randint(0, h - ch + 1, (b,), device=images.device)
        left = torch.randint(0, w - cw + 1, (b,), device=images.device)
        # A view of every ch x cw window, [B, H-ch+1, W-cw+1, T', ch, cw, C] (T' = 1 for 4-D
        # input), then one gather of each sample's window: ~6x faster than indexing pixels.
        windows = images.reshape(b, -1, h, w, c).unfold(2, ch, 1).unfold(3, cw, 1)
        windows = windows.permute(0, 2, 3, 1, 5, 6, 4)
        crops = windows[torch.arange(b, device=images.device), top, left]  # [B, T', ch, cw, C]
        return crops.reshape(*lead, ch, cw, c)

    def extra_repr(self) -> str:
        return f"{self.height}x{self.width} -> {self.crop_height}x{self.crop_width}"


class CameraEncoder(nn.Module):
    """Backbone -> spatial softmax -> linear: images [N, 3, h, w] (uint8 or float) -> [N, D]."""

    def __init__(self, backbone: ResNet18GN, feature_dim: int, num_keypoints: int | None):
        super().__init__()
        self.backbone = backbone
        self.pool = SpatialSoftmax(backbone.out_channels, num_keypoints)
        self.proj = nn.Linear(self.pool.out_dim, feature_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(self.pool(self.backbone(x)))


class ImageEncoder(nn.Module):
    """Encodes one or more cameras, each uint8 [B, T, H, W, 3], into [B, T, n_cameras * D].

    camera_shapes: {key: (H, W, 3)} in the order the features are concatenated (the keys are
        those of the batch, e.g. "observation.images.top").
    feature_dim: D, features per camera.
    base_width: ResNet width (see `ResNet18GN`); num_keypoints: spatial-softmax keypoints.
    crop_ratio: random crop (train) / center crop (eval) size as a fraction of H and W;
        1.0 disables cropping.
    share_backbone: one CNN + keypoint layer + projection for all cameras (default: one each).

    `forward(images)` takes a mapping holding at least the camera keys (other keys, e.g. the
    rest of a batch, are ignored). uint8 images are scaled to [0, 1]; floating-point images
    are taken to be in [0, 1] already. The CNNs run in channels_last memory format.
    """

    def __init__(
        self,
        camera_shapes: Mapping[str, tuple[int, int, int]],
        feature_dim: int = 64,
        base_width: int = 12,
        num_keypoints: int | None = 32,
        crop_ratio: float = 0.9,
        share_backbone: bool = False,
    ):
        super().__init__()
        if not camera_shapes:
            raise ValueError("ImageEncoder needs at least one camera")
        self.camera_keys = tuple(camera_shapes)
        self.feature_dim = feature_dim
        self.out_dim = feature_dim * len(self.camera_keys)
        self.crops = nn.ModuleList()
        for key, shape in camera_shapes.items():
            if len(shape) != 3 or shape[2] != 3:
                raise ValueError(f"camera {key!r}: expected shape (H, W, 3), got {shape}")
            crop = RandomCrop(shape[0], shape[1], crop_ratio)
            # The CNN downsamples by 32 (ceil); a 1-pixel-wide feature map would make the
            # spatial softmax constant along that axis, i.e. no gradient, so refuse it.
            if min(crop.crop_height, crop.crop_width) <= 32:
                raise ValueError(
                    f"camera {key!r}: crop {crop.crop_height}x{crop.crop_width} of {shape[:2]} "
                    "is too small; the CNN needs more than 32 pixels in each direction"
                )
            self.crops.append(crop)
        n_models = 1 if share_backbone else len(self.camera_keys)
        self.cameras = nn.ModuleList(
            CameraEncoder(ResNet18GN(base_width), feature_dim, num_keypoints)
            for _ in range(n_models)
        ).to(memory_format=torch.channels_last)

    def forward(self, images: Mapping[str, torch.Tensor]) -> torch.Tensor:
        features = []
        for i, key in enumerate(self.camera_keys):
            if key not in images:
                raise KeyError(f"missing camera {key!r}; got keys {sorted(images)}")
            x = images[key]
            if x.ndim != 5 or x.shape[-1] != 3:
                raise ValueError(f"camera {key!r}: expected [B, T, H, W, 3], got {tuple(x.shape)}")
            b, t = x.shape[:2]
            x = self.crops[i](x)  # crop while still uint8 HWC: less to convert
            # [B*T, 3, h, w] as a channels_last view of the HWC data: no transpose copy, and
            # the CPU conv/GroupNorm kernels are ~1.5x faster in that layout than in NCHW.
            x = x.flatten(0, 1).contiguous().permute(0, 3, 1, 2)
            model = self.cameras[0 if len(self.cameras) == 1 else i]
            features.append(model(x).reshape(b, t, self.feature_dim))
        return torch.cat(features, dim=-1)


class StateEncoder(nn.Module):
    """MLP (Linear - activation - Linear) on a normalized state [..., S] -> [..., out_dim]."""

    def __init__(
        self, state_dim: int, out_dim: int = 64, hidden_dim: int = 256, activation: str = "mish"
    ):
        super().__init__()
        acts = {"mish": nn.Mish, "relu": nn.ReLU}
        if activation not in acts:
            raise ValueError(f"activation must be one of {sorted(acts)}, got {activation!r}")
        self.state_dim, self.out_dim = state_dim, out_dim
        self.net = nn.Sequential(
            nn.Linear(state_dim, hidden_dim), acts[activation](), nn.Linear(hidden_dim, out_dim)
        )

    def forward(self, state: torch.Tensor) -> torch.Tensor:
        if state.shape[-1] != self.state_dim:
            raise ValueError(f"expected state [..., {self.state_dim}], got {tuple(state.shape)}")
        return self.net(state)


class ObservationEncoder(nn.Module):
    """State MLP and camera CNNs side by side: [B, T, out_dim] = [state features | images].

    state_dim: S, or 0 for image-only policies. camera_shapes: as for `ImageEncoder`, or
        empty/None for state-only policies.
    state_feature_dim: width of the state features; None passes the state through unchanged
        (Diffusion Policy concatenates the raw low-dim observations).
    Remaining keyword arguments (feature_dim, base_width, num_keypoints, crop_ratio,
    share_backbone) go to `ImageEncoder`.
    """

    def __init__(
        self,
        state_dim: int,
        camera_shapes: Mapping[str, tuple[int, int, int]] | None = None,
        state_feature_dim: int | None = 64,
        state_hidden_dim: int = 256,
        **image_kwargs,
    ):
        super().__init__()
        self.state_dim = state_dim
        if state_dim <= 0:
            self.state_encoder, state_out = None, 0
        elif state_feature_dim is None:
            self.state_encoder, state_out = nn.Identity(), state_dim
        else:
            self.state_encoder = StateEncoder(state_dim, state_feature_dim, state_hidden_dim)
            state_out = state_feature_dim
        self.image_encoder = ImageEncoder(camera_shapes, **image_kwargs) if camera_shapes else None
        self.camera_keys = self.image_encoder.camera_keys if self.image_encoder else ()
        self.out_dim = state_out + (self.image_encoder.out_dim if self.image_encoder else 0)
        if self.out_dim == 0:
            raise ValueError("ObservationEncoder needs a state (state_dim > 0) or cameras")

    def forward(
        self,
        state: torch.Tensor | None = None,
        images: Mapping[str, torch.Tensor] | None = None,
    ) -> torch.Tensor:
        parts = []
        if self.state_encoder is not None:
            if state is None:
                raise ValueError("this encoder needs a state [B, T, S]")
            if state.ndim != 3 or state.shape[-1] != self.state_dim:
                raise ValueError(
                    f"expected state [B, T, {self.state_dim}], got {tuple(state.shape)}"
                )
            parts.append(self.state_encoder(state.float()))
        if self.image_encoder is not None:
            if images is None:
                raise ValueError(f"this encoder needs images for {list(self.camera_keys)}")
            parts.append(self.image_encoder(images))
        if len(parts) == 2 and parts[0].shape[:2] != parts[1].shape[:2]:
            raise ValueError(
                f"state and images disagree on [B, T]: {tuple(parts[0].shape[:2])} vs "
                f"{tuple(parts[1].shape[:2])}"
            )
        return torch.cat(parts, dim=-1)
