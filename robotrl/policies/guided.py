"""Guided inpainting of an action chunk toward a frozen prefix, for real-time chunking (RTC,
Black et al. 2025, "Real-Time Execution of Action Chunking Flow Policies").

RTC samples the new chunk with pseudo-inverse guidance (PiGDM, Song et al. 2023): at every
denoising step the network's estimate of the clean chunk x0 is compared with the target `y` (the
previous chunk's actions, weighted by `w`: 1 where they will execute during inference, fading to
0 where the previous chunk ends) and the step is pushed along the vector-Jacobian product

    g = (d x0 / d x_t)^T  diag(w) (y - x0).

The paper does this on a flow-matching velocity; this is the same correction on the DDIM step of
an epsilon network (VP schedule, alpha_bar_t), in PiGDM's VP form for a noiseless mask:

    x_{t-1} = DDIM(x_t) + strength * sqrt(alpha_bar_{t-1} * alpha_bar_t) * g.

Since d x0 / d x_t is about I / sqrt(alpha_bar_t), strength 1 moves the next step's clean
estimate onto the target at the frozen entries; where the network's Jacobian couples entries, the
free part of the chunk bends toward a continuation of the frozen part (the point of RTC over
plain replacement). With all weights 0 this is exactly DDIM, i.e. `predict_chunk` with a DDIM
sampler; with another sampler configured, guidance still samples with DDIM at the policy's number
of steps (the network is the same epsilon predictor).

`jacobian="identity"` takes d x0 / d x_t as exactly I / sqrt(alpha_bar_t): the step's own
(clipped) clean estimate is moved toward the target by the weights, with no backward pass, so a
guided chunk costs what an unguided one does (89 ms against 174 ms with the network's Jacobian
and 78 ms unguided, PushT policy, one CPU thread). The free entries still adapt to the held
ones, one denoising step later: the network sees the corrected x_t at the next step. On a CPU
the backward pass costs RTC a tick of latency, more than the exact Jacobian gives back
(docs/results.md, deploy strategies): `deploy` defaults to the identity.

A policy this cannot guide (one that samples its own way, e.g. the consistency policy's one-step
jump has no intermediate x_t to correct) gets the fallback: an unguided chunk, then the target
blended in by the same weights (frozen entries replaced, the soft region interpolated). That
keeps the executed actions continuous but, unlike guidance, the unfrozen part of the chunk does
not adapt to the frozen part.
"""

from __future__ import annotations

import numpy as np
import torch

from robotrl.control.chunking import RTC_GUIDANCE as JACOBIANS
from robotrl.policies.diffusion import DiffusionPolicy, make_scheduler

GUIDANCE_STRENGTH = 1.0  # 1: a full pseudo-inverse correction of the frozen entries per step


def can_guide(policy) -> bool:
    """True when `policy` samples with DiffusionPolicy's own epsilon-network loop."""
    return (
        isinstance(policy, DiffusionPolicy)
        and type(policy).predict_chunk is DiffusionPolicy.predict_chunk
    )


def guided_chunk(
    policy,
    obs_window: dict,
    target: np.ndarray | torch.Tensor,
    weights: np.ndarray | torch.Tensor,
    generator: torch.Generator | None = None,
    strength: float = GUIDANCE_STRENGTH,
    jacobian: str = "network",
) -> torch.Tensor:
    """Actions [B, H, A] (unnormalized) for observation windows [B, n_obs, ...], inpainted
    toward `target` ([H, A] or [B, H, A], unnormalized) with per-entry `weights` ([H])."""
    target = torch.as_tensor(np.asarray(target), dtype=torch.float32)
    weights = torch.as_tensor(np.asarray(weights), dtype=torch.float32)
    if not can_guide(policy):
        chunk = policy.predict_chunk(obs_window, generator=generator)
        w = weights.view(1, -1, 1)
        return w * target.expand_as(chunk) + (1 - w) * chunk
    if jacobian not in JACOBIANS:
        raise ValueError(f"unknown jacobian '{jacobian}': choose {', '.join(JACOBIANS)}")
    return _guided_ddim(policy, obs_window, target, weights, generator, strength, jacobian)


def _guided_ddim(policy, obs_window, target, weights, generator, strength, jacobian):
    with torch.no_grad():
        cond = policy.condition(obs_window)
        batch, config = len(cond), policy.config
        targets = target.expand(batch, config.horizon, config.action_dim)
        y = policy.encode_actions(targets, obs_window)  # the network works in [-1, 1]
    w = weights.view(1, -1, 1)
    sampler = make_scheduler("ddim", config.train_steps)
    sampler.set_timesteps(policy.sampler_steps)
    alphas = sampler.alphas_cumprod
    steps = list(sampler.timesteps)
    sample = torch.randn((batch, config.horizon, config.action_dim), generator=generator)
    guided = bool(weights.abs().sum() > 0)
    backward = guided and jacobian == "network"
    for n, t in enumerate(steps):
        alpha = alphas[t]
        alpha_next = alphas[steps[n + 1]] if n + 1 < len(steps) else sampler.final_alpha_cumprod
        with torch.enable_grad() if backward else torch.no_grad():
            x = sample.detach().requires_grad_(backward)
            eps = policy.net(x, t.expand(batch), cond)
        out = sampler.step(eps.detach(), t, sample, generator=generator)
        step = out.prev_sample
        if backward:
            x0 = (x - (1 - alpha).sqrt() * eps) / alpha.sqrt()
            # J^T diag(w) (y - x0): one backward pass through the network
            (grad,) = torch.autograd.grad(x0, x, grad_outputs=w * (y - x0.detach()))
            step = step + strength * (alpha_next * alpha).sqrt() * grad
        elif guided:  # J ~ I / sqrt(alpha_bar_t): the step's own (clipped) x0 moves toward y
            step = step + strength * alpha_next.sqrt() * w * (y - out.pred_original_sample)
        sample = step.detach()
    return policy.decode_actions(sample.clamp(-1, 1), obs_window).detach()
