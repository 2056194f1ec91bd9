"""Training samples from a dataset store: windows of frames around the current one.

The store is the Zarr v3 group written by `overlayflow.dataset.store` (``results/datasets/{dataset}.zarr``):
frames of all episodes concatenated in time under ``data/``, ``meta/episode_ends`` holding the
cumulative, exclusive episode ends (the Diffusion Policy ReplayBuffer convention).

A sample is a window of ``horizon`` frames that never crosses an episode boundary; at the edges of
an episode the edge frame is repeated (`overlayflow.dataset.indices`). The window starts
``n_obs_steps - 1`` frames before the *current* frame, the last observation step, so the timeline
of one sample is::

    step       0   1  ...  To-1  ...  To-1+n_action_steps-1  ...  horizon-1
    obs        o   o        o                                              (To = n_obs_steps)
    action     a   a  ...   a    ...           a             ...     a     (all horizon steps)
    executed                a    ...           a                           (n_action_steps)

Images stay uint8 from the store to the device (the policy converts them there), and only the
frames of one window are read per sample, so memory stays bounded whatever the store's size.
"""

from __future__ import annotations

import operator
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import zarr
from torch.utils.data import Dataset

from overlayflow.dataset.indices import check_episode_ends, check_horizon, sequence_indices
from overlayflow.dataset.normalizer import LimitsNormalizer
from overlayflow.dataset.store import open_store
from overlayflow.settings import PolicyConfig


def observation_tensors(
    current: np.ndarray, initial: np.ndarray | None, agent_pos: np.ndarray
) -> dict[str, torch.Tensor]:
    """The network's observation of one window, as a sample holds it and a deployed policy
    (``overlayflow.policy.deploy``) builds it: ``current`` uint8 (To, C, H, W), ``initial`` (the
    episode's first image, (C, H, W); None without memory) repeated To times, ``agent_pos``
    float32 (To, state_dim). Images stay uint8: the policy converts them on its device."""
    sample = {"current": torch.from_numpy(np.ascontiguousarray(current, dtype=np.uint8))}
    if initial is not None:
        initial = np.asarray(initial, dtype=np.uint8)
        sample["initial"] = torch.from_numpy(np.repeat(initial[None], len(current), axis=0))
    sample["agent_pos"] = torch.from_numpy(np.ascontiguousarray(agent_pos, dtype=np.float32))
    return sample


class OverlayDataset(Dataset):
    """Windows of a dataset store as training samples.

    ``OverlayDataset(store, horizon=16, n_obs_steps=2, n_action_steps=15)``: one sample per window of
    `sequence_indices` (``sequence_length = horizon``, ``pad_before = n_obs_steps - 1``,
    ``pad_after = n_action_steps - 1``) over the chosen ``episodes`` (store indices; None = all).
    With To = n_obs_steps, a sample is a dict of tensors::

        current         uint8   (To, C, H, W)   images of window steps 0..To-1 (concat6: RGB + path)
        initial         uint8   (To, C, H, W)   the episode's first frame, repeated To times;
                                                only when memory=True
        agent_pos       float32 (To, 14)        data/state of window steps 0..To-1
        action          float32 (horizon, 14)   data/action of all window steps, not normalized
        task            int64   ()              the episode's task id (index into the
                                                store's `tasks` attribute)
        episode         int64   ()              the episode's index in the store
        frame           int64   ()              frame index within the episode of step To-1,
                                                the current frame
        target_visible  float32 ()              at the current frame; NaN when unknown
        path_status     int64   ()              at the current frame (codes: the store's
                                                `path_status` attribute)

    Window steps before the episode's first frame or after its last repeat that frame. Images stay
    uint8; the policy normalizes actions with `action_normalizer`. The small per-frame arrays are
    read into memory here; images are read per sample, in one slice read for the To contiguous
    frames (plus one frame for ``initial`` when the window does not start at the episode's first
    frame), through a store handle that each process opens for itself on first use, so DataLoader
    workers never share one.
    """

    def __init__(
        self,
        store: str | Path,
        *,
        horizon: int,
        n_obs_steps: int,
        n_action_steps: int,
        episodes: Sequence[int] | np.ndarray | None = None,
        memory: bool = True,
    ) -> None:
        check_horizon(horizon, n_obs_steps, n_action_steps)
        self.path = Path(store)
        self.horizon = int(horizon)
        self.n_obs_steps = int(n_obs_steps)
        self.n_action_steps = int(n_action_steps)
        self.memory = bool(memory)

        group = open_store(self.path)
        try:
            self._ends = check_episode_ends(group["meta/episode_ends"][:])
        except ValueError as error:
            raise ValueError(f"{self.path}: meta/episode_ends is invalid: {error}") from None
        self._starts = self._ends - np.diff(self._ends, prepend=0)
        self._task_id = np.asarray(group["meta/task_id"][:], dtype=np.int64)
        self._state = np.asarray(group["data/state"][:], dtype=np.float32)
        self._action = np.asarray(group["data/action"][:], dtype=np.float32)
        self._path_status = np.asarray(group["data/path_status"][:], dtype=np.int64)
        self._target_visible = np.asarray(group["data/target_visible"][:], dtype=np.float32)
        n_frames = len(self._state)
        if len(self._ends) and self._ends[-1] != n_frames:
            raise ValueError(
                f"{self.path} is inconsistent: meta/episode_ends ends at {self._ends[-1]} but the "
                f"data arrays have {n_frames} frames. Re-run the consolidation."
            )

        self.episodes = self._select(episodes)
        self._episode_mask = np.zeros(len(self._ends), dtype=bool)
        self._episode_mask[self.episodes] = True
        self.indices = sequence_indices(
            self._ends,
            self.horizon,
            self.n_obs_steps - 1,
            self.n_action_steps - 1,
            self._episode_mask,
        )
        self._window_episode = np.searchsorted(self._ends, self.indices[:, 0], side="right")
        self._steps = np.arange(self.horizon)
        # Opened lazily per process (see `_images`), never carried across fork or pickle;
        # or every image in memory (`load_images`).
        self._image: zarr.Array | None = None
        self._pid: int | None = None
        self._in_memory: np.ndarray | None = None

    @classmethod
    def for_policy(
        cls, store: str | Path, policy: PolicyConfig, episodes: Sequence[int] | np.ndarray
    ) -> OverlayDataset:
        """The samples ``policy`` trains on: its window sizes and memory mode."""
        return cls(
            store,
            horizon=policy.horizon,
            n_obs_steps=policy.n_obs_steps,
            n_action_steps=policy.n_action_steps,
            episodes=episodes,
            memory="initial" in policy.image_keys,
        )

    def _select(self, episodes: Sequence[int] | np.ndarray | None) -> np.ndarray:
        n_episodes = len(self._ends)
        if episodes is None:
            selected = np.arange(n_episodes, dtype=np.int64)
        else:
            selected = np.asarray(episodes)
            if selected.ndim != 1 or (selected.size and selected.dtype.kind not in "iu"):
                raise ValueError(f"`episodes` must be a list of episode indices. Got {episodes!r}.")
            selected = selected.astype(np.int64)
            outside = selected[(selected < 0) | (selected >= n_episodes)]
            if outside.size:
                raise ValueError(
                    f"`episodes` must be indices in [0, {n_episodes}) of {self.path}. "
                    f"Got {outside.tolist()}."
                )
            if len(np.unique(selected)) != len(selected):
                raise ValueError(f"`episodes` must not repeat an episode. Got {selected.tolist()}.")
        if not selected.size:
            raise ValueError(f"`episodes` must name at least one episode of {self.path}. Got none.")
        return np.sort(selected)

    def __len__(self) -> int:
        return len(self.indices)

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_image"] = None
        state["_pid"] = None
        return state

    @property
    def image_nbytes(self) -> int:
        """Bytes of the store's images, uncompressed."""
        return self._images().nbytes

    def load_images(self, images: np.ndarray | None = None) -> np.ndarray:
        """Read every image of the store into memory (or take ``images``, the same store's, read
        by another dataset of it); samples then come from memory. Returns the array."""
        if images is None:
            images = np.asarray(self._images()[:])
        if images.shape != self._images().shape:
            raise ValueError(
                f"images of shape {images.shape} are not {self.path}'s {self._images().shape}"
            )
        self._in_memory = images
        return images

    def _images(self) -> zarr.Array | np.ndarray:
        if self._in_memory is not None:
            return self._in_memory
        pid = os.getpid()
        if self._image is None or self._pid != pid:
            self._image = zarr.open_array(str(self.path), path="data/image", mode="r")
            self._pid = pid
        return self._image

    def window_frames(self, index: int) -> np.ndarray:
        """Buffer indices of the ``horizon`` frames of window ``index`` (edges repeated)."""
        buffer_start, buffer_end, sample_start, _ = self.indices[index]
        return np.clip(buffer_start - sample_start + self._steps, buffer_start, buffer_end - 1)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        i = operator.index(index)
        if not -len(self) <= i < len(self):
            raise IndexError(f"sample {index} is out of range for {len(self)} samples")
        i %= len(self)
        frames = self.window_frames(i)
        obs = frames[: self.n_obs_steps]
        episode = int(self._window_episode[i])
        start = int(self._starts[episode])
        current = int(obs[-1])

        images = self._images()
        first = int(obs[0])
        block = np.asarray(images[first : current + 1])
        initial = None
        if self.memory:
            initial = block[0] if first == start else np.asarray(images[start])
        sample = observation_tensors(block[obs - first], initial, self._state[obs])
        sample["action"] = torch.from_numpy(self._action[frames])
        sample["task"] = torch.tensor(self._task_id[episode], dtype=torch.int64)
        sample["episode"] = torch.tensor(episode, dtype=torch.int64)
        sample["frame"] = torch.tensor(current - start, dtype=torch.int64)
        sample["target_visible"] = torch.tensor(self._target_visible[current], dtype=torch.float32)
        sample["path_status"] = torch.tensor(self._path_status[current], dtype=torch.int64)
        return sample

    def action_normalizer(self) -> LimitsNormalizer:
        """`LimitsNormalizer` fitted on every action of this dataset's episodes."""
        rows = np.repeat(self._episode_mask, self._ends - self._starts)
        return LimitsNormalizer.fit(self._action[rows])


def hold_images(datasets: Sequence[OverlayDataset | None], limit_gb: float) -> str:
    """Read the images of the datasets' store (one store) into memory once, shared by all of
    them, when they take at most ``limit_gb``; returns what was done, for the log."""
    first = next(d for d in datasets if d is not None)
    gb = first.image_nbytes / 2**30
    if gb > limit_gb:
        return f"images read from the store for every sample ({gb:.2f} GB > {limit_gb:.2f})"
    started = time.monotonic()
    images = first.load_images()
    for dataset in datasets:
        if dataset is not None:
            dataset.load_images(images)
    return f"images in memory ({gb:.2f} GB, read in {time.monotonic() - started:.0f} s)"
