"""`train` and `distill` on several processes under `torchrun` (DistributedDataParallel).

torchrun starts one process per rank with RANK/WORLD_SIZE set; `ranks()` joins them into one
process group (gloo: the trainer runs on CPU). The run stays the run one process would make:
- every rank draws the same global batch of window indices from the same seeded stream and
  keeps its own disjoint slice (`Ranks.shard`);
- every rank draws the whole batch's diffusion noise from the same generator and keeps its
  own rows (`ShardedGenerator`, through `randn`/`randint`), so N ranks use exactly the noise
  one process would;
- DDP averages the gradients: the mean of N equal shards' mean losses is the global mean.
All ranks therefore hold the same weights, optimizer and RNG states: rank 0 alone writes
checkpoints, logs, plots and evaluates, and a restart of all ranks resumes from its state.
Augmentations with RNGs of their own (camera crops, --mirror, --forecast-delay) draw per rank.
"""

from __future__ import annotations

import atexit
import os
from dataclasses import dataclass
from functools import cache

import torch

from robotrl.errors import RobotrlError


@dataclass(frozen=True)
class Ranks:
    rank: int = 0
    world: int = 1

    @property
    def main(self) -> bool:
        """The rank that writes files and evaluates."""
        return self.rank == 0

    def shard(self, items, global_size: int):
        """This rank's slice of a global batch (the first `global_size / world` to rank 0, …)."""
        share = self.share(global_size)
        return items[self.rank * share : (self.rank + 1) * share]

    def share(self, global_size: int) -> int:
        if global_size % self.world:
            raise RobotrlError(
                f"--batch-size {global_size} is the global batch: give a multiple of the "
                f"{self.world} processes"
            )
        return global_size // self.world


@cache
def ranks() -> Ranks:
    """This process's place in a torchrun job (a single process: rank 0 of 1)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Ranks()
    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group("gloo")
        atexit.register(dist.destroy_process_group)
    return Ranks(dist.get_rank(), dist.get_world_size())


class ShardedGenerator:
    """A seeded generator whose draws are this rank's rows of the global batch's draws."""

    def __init__(self, generator: torch.Generator, ranks: Ranks):
        self.generator, self.ranks = generator, ranks

    def rows(self, draw, shape: tuple[int, ...]) -> torch.Tensor:
        whole = draw((shape[0] * self.ranks.world, *shape[1:]))
        return whole[self.ranks.rank * shape[0] : (self.ranks.rank + 1) * shape[0]]


def randn(shape, generator: torch.Generator | ShardedGenerator | None) -> torch.Tensor:
    """`torch.randn(shape, generator=…)`, with rows [0] of the batch sharded across ranks."""
    if isinstance(generator, ShardedGenerator):
        return generator.rows(lambda s: torch.randn(s, generator=generator.generator), shape)
    return torch.randn(shape, generator=generator)


def randint(low: int, high: int, shape, generator) -> torch.Tensor:
    """`torch.randint(low, high, shape, generator=…)`, sharded like `randn`."""
    if isinstance(generator, ShardedGenerator):
        g = generator.generator
        return generator.rows(lambda s: torch.randint(low, high, s, generator=g), tuple(shape))
    return torch.randint(low, high, tuple(shape), generator=generator)


class LossModule(torch.nn.Module):
    """The trained networks and their loss as one module, for DDP to wrap: DDP syncs the
    gradients of parameters that take part in `forward`."""

    def __init__(self, model: torch.nn.Module, modules: dict, loss_fn):
        super().__init__()
        self.model, self.extra = model, torch.nn.ModuleDict(modules)
        self.loss_fn = loss_fn

    def forward(self, batch: dict, noise) -> torch.Tensor:
        return self.loss_fn(batch, noise)


def data_parallel(model, modules: dict, loss_fn, ranks: Ranks):
    """`loss_fn` as called by the loop: itself on one process, through DDP on several."""
    if ranks.world == 1:
        return loss_fn
    from torch.nn.parallel import DistributedDataParallel

    return DistributedDataParallel(LossModule(model, modules, loss_fn))


def mean_over_ranks(value: float, ranks: Ranks) -> float:
    if ranks.world == 1:
        return value
    import torch.distributed as dist

    total = torch.tensor([value], dtype=torch.float64)
    dist.all_reduce(total)
    return float(total) / ranks.world


def min_over_ranks(value: int, ranks: Ranks) -> int:
    if ranks.world == 1:
        return value
    import torch.distributed as dist

    lowest = torch.tensor([value], dtype=torch.int64)
    dist.all_reduce(lowest, op=dist.ReduceOp.MIN)
    return int(lowest)
