"""Training windows: an observation history and an action horizon around every frame.

Sample i is frame t of some episode: observations t-n_obs+1 .. t and actions t .. t+H-1.
Indices that fall outside the episode are clamped to its first/last frame (the padding
Diffusion Policy uses), and `action_is_pad` marks the padded actions. With `lookback` L
the observation history reaches L frames further back and `action.past` holds actions
t-L .. t-1 (clamped likewise; `frames_before` says how many frames of the episode precede t),
what training on forecast observations needs (`robotrl.policies.forecast_training`). Indexing is
vectorized: `windows[np.array([...])]` returns a whole batch with one gather per feature,
which is what a `DataLoader(windows, sampler=BatchSampler(...), batch_size=None)` asks for.
"""

from __future__ import annotations

import numpy as np
import torch

from robotrl.data.dataset import Dataset


class WindowDataset(torch.utils.data.Dataset):
    def __init__(
        self,
        dataset: Dataset,
        n_obs: int = 2,
        horizon: int = 16,
        obs_keys: tuple[str, ...] | None = None,
        image_keys: tuple[str, ...] | None = None,
        lookback: int = 0,
    ):
        self.dataset, self.n_obs, self.horizon, self.lookback = dataset, n_obs, horizon, lookback
        vector = [k for k in dataset.columns if k.startswith("observation.")]
        self.obs_keys = tuple(obs_keys if obs_keys is not None else vector)
        self.image_keys = tuple(image_keys if image_keys is not None else dataset.video_keys)
        lengths = dataset.ends - dataset.starts
        episode_of_row = np.repeat(np.arange(dataset.num_episodes), lengths)
        self._first = dataset.starts[episode_of_row]  # per row: its episode's first row
        self._last = dataset.ends[episode_of_row] - 1
        self._obs_offsets = np.arange(-n_obs + 1 - lookback, 1)
        self._past_offsets = np.arange(-lookback, 0)
        self._act_offsets = np.arange(horizon)

    def __len__(self) -> int:
        return self.dataset.num_frames  # sample i is dataset row i

    def __getitem__(self, index) -> dict[str, torch.Tensor]:
        single = np.isscalar(index)
        rows = np.atleast_1d(np.asarray(index))
        first, last = self._first[rows][:, None], self._last[rows][:, None]
        obs_rows = np.clip(rows[:, None] + self._obs_offsets, first, last)
        raw_act_rows = rows[:, None] + self._act_offsets
        act_rows = np.minimum(raw_act_rows, last)
        columns = self.dataset.columns
        batch = {key: torch.from_numpy(columns[key][obs_rows]) for key in self.obs_keys}
        for key in self.image_keys:
            batch[key] = torch.from_numpy(self.dataset.frames(key, obs_rows))
        batch["action"] = torch.from_numpy(columns["action"][act_rows])
        batch["action_is_pad"] = torch.from_numpy(raw_act_rows > last)
        batch["episode_index"] = torch.from_numpy(columns["episode_index"][rows])
        if self.lookback:
            past_rows = np.clip(rows[:, None] + self._past_offsets, first, last)
            batch["action.past"] = torch.from_numpy(columns["action"][past_rows])
            batch["frames_before"] = torch.from_numpy(rows - first[:, 0])
        if single:
            return {k: v[0] for k, v in batch.items()}
        return batch

    def loader(self, batch_size: int = 256, shuffle: bool = True, seed: int = 0):
        """A DataLoader yielding whole batches from vectorized indexing (no per-sample work)."""
        generator = torch.Generator().manual_seed(seed)
        base = (
            torch.utils.data.RandomSampler(self, generator=generator)
            if shuffle
            else torch.utils.data.SequentialSampler(self)
        )
        sampler = torch.utils.data.BatchSampler(base, batch_size, drop_last=False)
        return torch.utils.data.DataLoader(
            self, sampler=sampler, batch_size=None, collate_fn=lambda b: b
        )
