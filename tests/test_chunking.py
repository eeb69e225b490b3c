"""Chunk execution strategies (pure bookkeeping) and the RTC guided sampler."""

import math

import numpy as np
import pytest
import torch

from robotrl.control.chunking import Chunk, LatencyEstimate, make_strategy, rtc_weights
from robotrl.policies.diffusion import DiffusionPolicy
from robotrl.policies.guided import can_guide, guided_chunk
from tests.test_policies import tiny_policy

H, A = 8, 2


def chunk(start: int, value: float | None = None) -> Chunk:
    """A chunk whose action for tick t is (t, value): which chunk an action came from shows."""
    ticks = np.arange(start, start + H, dtype=float)
    tag = float(start) if value is None else value
    return Chunk(np.stack([ticks, np.full(H, tag)], axis=1), start)


def test_receding_replaces_the_chunk_from_its_arrival_and_drops_the_past():
    s = make_strategy("receding", H, execute_steps=4)
    assert s.wants_inference(0, delay=0)
    s.add(chunk(0), tick=0)
    assert [s.wants_inference(t, delay=2) for t in range(6)] == [False] * 4 + [True] * 2
    # a slow policy is asked sooner, so that its chunk lands before this one runs out
    assert [s.wants_inference(t, delay=6) for t in range(4)] == [False, False, True, True]
    # requested at tick 4, landed during tick 6: its actions for ticks 4 and 5 are in the past
    s.add(chunk(4), tick=6)
    assert s.dropped == 2
    assert s.action(6).tolist() == [6, 4]  # the new chunk's action for tick 6, not its first
    assert s.remaining(6) == 6  # ticks 6..11
    assert s.action(12) is None  # beyond every chunk: the loop holds


def test_a_chunk_that_lands_after_its_horizon_is_all_dropped():
    s = make_strategy("rtc", H, execute_steps=4)
    s.add(chunk(0), tick=20)
    assert s.dropped == H and s.action(20) is None and s.remaining(20) == 0


def test_sync_executes_execute_steps_then_asks_and_never_drops():
    s = make_strategy("sync", H, execute_steps=3)
    assert s.blocking
    s.add(chunk(0), tick=0)
    assert [s.action(t) is not None for t in range(4)] == [True, True, True, False]
    assert [s.wants_inference(t, 0) for t in range(4)] == [False, False, False, True]
    assert s.dropped == 0


def test_temporal_ensemble_weights_older_chunks_by_exp_minus_k_i():
    k = 0.5
    s = make_strategy("ensemble", H, execute_steps=1, k=k)
    assert s.wants_inference(0, 0) and not s.blocking
    s.add(chunk(0, value=1.0), tick=0)
    s.add(chunk(1, value=3.0), tick=1)
    s.add(chunk(2, value=7.0), tick=2)
    w = np.exp(-k * np.arange(3))  # the oldest chunk weighs 1
    assert s.action(2)[1] == pytest.approx((w @ [1.0, 3.0, 7.0]) / w.sum())
    assert s.action(2)[0] == pytest.approx(2.0)  # every chunk agrees on the tick's own entry
    assert s.action(8)[1] == pytest.approx((w[:2] @ [3.0, 7.0]) / w[:2].sum())  # chunk 0 ended
    assert s.remaining(8) == 2 and s.remaining(20) == 0  # ticks 8, 9 of chunk 2
    s.add(chunk(12, value=0.0), tick=12)  # chunks that ended are forgotten
    assert len(s.chunks) == 1


def test_rtc_prefix_is_the_previous_chunk_on_the_new_chunks_ticks():
    s = make_strategy("rtc", H, execute_steps=4)
    assert s.prefix(0, delay=2) is None  # nothing to continue
    s.add(chunk(0), tick=0)
    p = s.prefix(4, delay=2)
    overlap = H - 4  # the previous chunk covers ticks 4..7 of the new one
    np.testing.assert_array_equal(p.actions[:overlap], chunk(0).actions[4:])
    assert p.frozen == 2 and (p.actions[overlap:] == 0).all()
    np.testing.assert_allclose(p.weights[:2], 1.0)
    assert (p.weights[overlap:] == 0).all()
    assert 0 < p.weights[3] < p.weights[2] < 1
    assert p.guidance == "identity"  # the default: no backward pass
    network = make_strategy("rtc", H, execute_steps=4, guidance="network")
    network.add(chunk(0), tick=0)
    assert network.prefix(4, delay=2).guidance == "network"
    with pytest.raises(ValueError, match="rtc guidance"):
        make_strategy("rtc", H, execute_steps=4, guidance="diagonal")


def test_rtc_weights_follow_the_papers_schedule():
    w = rtc_weights(horizon=16, delay=3, overlap=11)
    assert (w[:3] == 1).all() and (w[11:] == 0).all()
    assert np.all(np.diff(w[2:12]) < 0)  # strictly fading in the soft region
    c = (11 - 5) / (11 - 3 + 1)
    assert w[5] == pytest.approx(c * (math.exp(c) - 1) / (math.e - 1))


def test_latency_estimate_rounds_up_to_ticks():
    est = LatencyEstimate(dt=0.1, window=5, quantile=0.9)
    assert est.ticks == 0
    for latency in (0.21, 0.27, 0.25, 0.26, 0.22):
        est.add(latency)
    assert est.ticks == 3  # a chunk taking 0.27 s lands in the third tick after its request
    est.add(0.05)
    est.add(0.05)
    est.add(0.05)
    est.add(0.05)
    est.add(0.05)
    assert est.ticks == 1  # old samples leave the window


def test_guided_sampler_without_weights_is_ddim_and_with_them_holds_the_prefix():
    policy = tiny_policy().eval()
    assert can_guide(policy)
    window = {"observation.state": torch.rand(1, 2, 5)}
    plain = policy.predict_chunk(window, generator=torch.Generator().manual_seed(3))
    same = guided_chunk(
        policy, window, np.zeros((8, 3)), np.zeros(8), torch.Generator().manual_seed(3)
    )
    torch.testing.assert_close(plain, same, rtol=0, atol=0)

    target = np.clip(np.random.default_rng(0).normal(0, 0.5, (8, 3)), -1, 1)
    weights = rtc_weights(8, delay=3, overlap=6)
    # An untrained network's Jacobian is far from the trained one's ~I / sqrt(alpha_bar): a full
    # correction per step overshoots there, half of one converges.
    generator = torch.Generator().manual_seed(3)
    guided = guided_chunk(policy, window, target, weights, generator, strength=0.5)[0]
    free = np.abs(plain[0, :3].numpy() - target[:3]).mean()
    held = np.abs(guided[:3].numpy() - target[:3]).mean()
    assert held < 0.05 and held < free / 5  # frozen entries land on the previous chunk


def test_identity_jacobian_guidance_holds_the_prefix_without_a_backward_pass():
    policy = tiny_policy().eval()
    window = {"observation.state": torch.rand(1, 2, 5)}
    target = np.clip(np.random.default_rng(0).normal(0, 0.5, (8, 3)), -1, 1)
    weights = rtc_weights(8, delay=3, overlap=6)
    plain = policy.predict_chunk(window, generator=torch.Generator().manual_seed(3))[0]
    grad_modes = []  # whether autograd records each network pass (it must, to backpropagate)
    policy.net.register_forward_hook(lambda *_: grad_modes.append(torch.is_grad_enabled()))
    guided = guided_chunk(
        policy, window, target, weights, torch.Generator().manual_seed(3), jacobian="identity"
    )[0]
    assert grad_modes and not any(grad_modes)
    guided_chunk(policy, window, target, weights, jacobian="network")
    assert all(grad_modes[len(grad_modes) // 2 :])  # the network's Jacobian does record
    held = np.abs(guided[:3].numpy() - target[:3]).mean()
    assert held < 0.02 and held < np.abs(plain[:3].numpy() - target[:3]).mean() / 10
    assert not torch.equal(guided[6:], plain[6:])  # the free entries follow the frozen ones
    with pytest.raises(ValueError, match="jacobian"):
        guided_chunk(policy, window, target, weights, jacobian="diagonal")


def test_unguidable_policy_falls_back_to_blending():
    class OneStep(DiffusionPolicy):  # samples its own way, as the consistency policy does
        def predict_chunk(self, obs_window, generator=None):
            return torch.zeros(1, 8, 3)

    policy = OneStep(tiny_policy().config).eval()
    assert not can_guide(policy)
    target, weights = np.ones((8, 3)), rtc_weights(8, delay=2, overlap=6)
    out = guided_chunk(policy, {"observation.state": torch.rand(1, 2, 5)}, target, weights)[0]
    np.testing.assert_allclose(out[:, 0].numpy(), weights, atol=1e-6)  # w * 1 + (1 - w) * 0


def test_forecast_puts_commanded_entries_at_the_queued_targets_and_extrapolates_the_rest():
    """PushT in ee_pos: the pusher entries of the forecast frames are the queued targets of the
    ticks before them, the block moves on at its last velocity, frames not past the newest
    observation stay as observed, and nothing queued ahead leaves the window as it is."""
    from robotrl.control.forecast import ObservationForecast
    from robotrl.policies.diffusion import DiffusionConfig
    from robotrl.tasks import make

    env = make("PushT", action_mode="ee_pos")
    robot = env.unwrapped.robot
    config = DiffusionConfig(obs_keys=("observation.state", "observation.environment_state"))
    forecast = ObservationForecast(config.obs_keys, robot.state_names, robot.action.names)
    names = list(robot.state_names)
    ee = [names.index(n) for n in ("ee.x", "ee.y", "ee.z")]
    state = np.stack([np.arange(len(names)), np.arange(len(names)) + 0.5]).astype(np.float32)
    block = np.array([[0.1, 0.2, 1.0, 0.0], [0.11, 0.19, 1.0, 0.0]], np.float32)
    window = {"observation.state": state, "observation.environment_state": block}
    queued = [np.full(6, 10.0 + i) for i in range(3)]  # actions for ticks r, r + 1, r + 2

    out = forecast(window, queued)  # the window of tick r + 3: frames r + 2 and r + 3
    np.testing.assert_allclose(out["observation.state"][:, ee], [[11.0] * 3, [12.0] * 3])
    others = [i for i in range(len(names)) if i not in ee]
    np.testing.assert_allclose(out["observation.state"][1, others], state[1, others] + 3 * 0.5)
    velocity = block[1] - block[0]
    np.testing.assert_allclose(
        out["observation.environment_state"],
        [block[1] + 2 * velocity, block[1] + 3 * velocity],
        atol=1e-6,
    )

    one = forecast(window, queued[:1])  # tick r + 1: the newest observed frame, then a forecast
    np.testing.assert_array_equal(one["observation.environment_state"][0], block[1])
    np.testing.assert_allclose(one["observation.state"][1, ee], [10.0] * 3)
    assert forecast(window, []) is window
    env.close()


def test_forecast_learns_the_arm_tracking_lag_from_the_ticks_it_ran():
    """An arm that closes 70% of the gap to its target each tick: once the forecast has seen
    enough such ticks it predicts the pusher along the lagging path, not at the targets."""
    from robotrl.control.forecast import ObservationForecast
    from robotrl.policies.diffusion import DiffusionConfig
    from robotrl.tasks import make

    env = make("PushT", action_mode="ee_pos")
    robot = env.unwrapped.robot
    config = DiffusionConfig(obs_keys=("observation.state",))
    forecast = ObservationForecast(config.obs_keys, robot.state_names, robot.action.names)
    names = list(robot.state_names)
    ee = [names.index(n) for n in ("ee.x", "ee.y", "ee.z")]
    rng = np.random.default_rng(0)
    state = np.zeros(len(names))
    for _ in range(30):
        action = np.zeros(6)
        action[:3] = state[ee] + rng.normal(0.0, 0.01, 3)
        after = state.copy()
        after[ee] += 0.7 * (action[:3] - state[ee])
        forecast.observe(state, action, after)
        state = after
    np.testing.assert_allclose(forecast.tracking.gain, 0.7, atol=1e-6)

    window = {"observation.state": np.stack([state, state]).astype(np.float32)}
    target = state[ee] + 0.01
    queued = [np.r_[target, np.zeros(3)]] * 2
    out = forecast(window, queued)["observation.state"]
    gap = 0.01 * np.ones(3)
    np.testing.assert_allclose(out[0, ee], state[ee] + 0.7 * gap, atol=1e-6)
    np.testing.assert_allclose(out[1, ee], state[ee] + 0.91 * gap, atol=1e-6)  # 1 - 0.3^2
    env.close()


def test_a_chunk_planned_for_a_later_tick_lets_the_previous_one_run_until_then():
    s = make_strategy("receding", H, execute_steps=4)
    s.add(chunk(0), tick=0)
    s.add(chunk(6, value=99.0), tick=4)  # planned for tick 6, landed during tick 4
    assert s.dropped == 0
    assert [s.action(t)[1] for t in (4, 5, 6, 7)] == [0.0, 0.0, 99.0, 99.0]
    assert not s.wants_inference(5, delay=2) and s.remaining(4) == 10


def test_rtc_planned_ahead_steers_only_the_first_entries_toward_the_previous_chunk():
    s = make_strategy("rtc", H, execute_steps=4)
    s.planned_ahead = True
    s.add(chunk(0), tick=0)
    p = s.prefix(5, delay=0)  # a chunk planned for tick 5: nothing of it runs during inference
    assert p.frozen == 0
    assert p.weights[0] > p.weights[1] > 0 and not p.weights[2:].any()
    np.testing.assert_array_equal(p.actions[:2, 0], [5, 6])  # the previous chunk's ticks 5, 6
