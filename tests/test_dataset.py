"""Tests for overlayflow.dataset: windows against a plain reference, split, normalizer, loader."""

from __future__ import annotations

import itertools
import json
import pickle
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
import zarr

from overlayflow.dataset.indices import check_horizon, sequence_indices, split_episodes
from overlayflow.dataset.loader import EpochBatches, make_loader
from overlayflow.dataset.normalizer import LimitsNormalizer
from overlayflow.dataset.samples import OverlayDataset
from overlayflow.dataset.store import FORMAT_VERSION as READ_FORMAT_VERSION
from overlayflow.dataset.store import StoreError
from overlayflow.settings import PolicyConfig

# (horizon, n_obs_steps, n_action_steps), from the degenerate to ManiFlow-like settings.
STEP_COMBOS = [(1, 1, 1), (4, 1, 4), (4, 2, 3), (5, 2, 2), (8, 3, 4), (16, 2, 8), (16, 2, 15)]
STATUS_CODES = {"ok": 0, "truncated": 1, "parse_error": 2, "http_error": 3, "held": 4, "none": 5}


@dataclass
class Store:
    """A store written by `make_store` and the arrays it holds, for reference lookups."""

    path: Path
    lengths: list[int]
    image: np.ndarray
    state: np.ndarray
    action: np.ndarray
    path_status: np.ndarray
    target_visible: np.ndarray
    task_id: np.ndarray

    @property
    def starts(self) -> np.ndarray:
        return np.cumsum([0, *self.lengths[:-1]])


@pytest.fixture
def make_store(tmp_path):
    """Write a tiny store per the contract; pixel channel 0 = episode, channel 1 = frame."""
    names = itertools.count()

    def make(
        lengths,
        *,
        channels: int = 3,
        size: int = 8,
        seed: int = 0,
        shard_frames: int | None = None,
        attrs: dict | None = None,
    ) -> Store:
        rng = np.random.default_rng(seed)
        lengths = [int(n) for n in lengths]
        n_frames = sum(lengths)
        episode = np.repeat(np.arange(len(lengths)), lengths)
        frame = np.concatenate([np.arange(n) for n in lengths])
        image = rng.integers(0, 256, (n_frames, channels, size, size), dtype=np.uint8)
        image[:, 0] = episode[:, None, None]
        image[:, 1] = frame[:, None, None]
        state = rng.normal(size=(n_frames, 14)).astype(np.float32)
        action = rng.normal(size=(n_frames, 14)).astype(np.float32)
        path_status = rng.integers(0, 6, n_frames).astype(np.uint8)
        target_visible = rng.random(n_frames).astype(np.float32)
        target_visible[rng.random(n_frames) < 0.3] = np.nan
        tasks = ["place_block", "click_bell", "turn_switch"]
        task_id = rng.integers(0, len(tasks), len(lengths)).astype(np.int32)

        path = tmp_path / f"store{next(names)}.zarr"
        root = zarr.open_group(str(path), mode="w", zarr_format=3)
        root.attrs.update(
            {
                "format": "overlayflow.dataset",
                "format_version": READ_FORMAT_VERSION,
                "layout": "overlay" if channels == 3 else "concat6",
                "source": "oracle",
                "image_size": [size, size],
                "channels": channels,
                "tasks": tasks,
                "episodes": [
                    {"task": tasks[t], "episode": f"episode{e}", "instruction": "", "frames": n}
                    for e, (t, n) in enumerate(zip(task_id, lengths, strict=True))
                ],
                "path_status": STATUS_CODES,
                "provenance": {"created": "test"},
                **(attrs or {}),
            }
        )
        frame_chunk = (1, channels, size, size)
        shards = None if shard_frames is None else (shard_frames, channels, size, size)
        root.create_array("data/image", data=image, chunks=frame_chunk, shards=shards)
        for name, data in [
            ("data/state", state),
            ("data/action", action),
            ("data/path_status", path_status),
            ("data/target_visible", target_visible),
            ("meta/episode_ends", np.cumsum(lengths).astype(np.int64)),
            ("meta/task_id", task_id),
        ]:
            root.create_array(name, data=data)
        return Store(path, lengths, image, state, action, path_status, target_visible, task_id)

    return make


def random_lengths(rng: np.random.Generator, horizon: int) -> list[int]:
    """Episode lengths that always include a 1-frame episode and one shorter than the horizon."""
    lengths = [*rng.integers(1, 3 * horizon + 2, rng.integers(1, 6)).tolist(), 1]
    lengths.append(int(rng.integers(1, horizon + 1)))
    return rng.permutation(lengths).tolist()


def reference_windows(lengths, horizon, pad_before, pad_after, selected=None):
    """(episode, window start s, buffer frame of each window step), episode by episode.

    A window start ``s`` (relative to the episode) is kept when it pads at most ``pad_before``
    steps before the episode and ``pad_after`` after it; an episode with no such start keeps
    ``s = -pad_before`` alone.
    """
    windows = []
    start = 0
    for episode, length in enumerate(lengths):
        if selected is None or episode in selected:
            starts = [
                s
                for s in range(-pad_before, length)
                if max(0, s + horizon - length) <= pad_after or s == -pad_before
            ]
            for s in starts:
                frames = [start + min(max(s + t, 0), length - 1) for t in range(horizon)]
                windows.append((episode, s, frames))
        start += length
    return windows


def reference_indices(lengths, horizon, pad_before, pad_after, selected=None) -> np.ndarray:
    starts = np.cumsum([0, *lengths[:-1]])
    rows = [
        [
            starts[e] + max(s, 0),
            starts[e] + min(s + horizon, lengths[e]),
            max(0, -s),
            horizon - max(0, s + horizon - lengths[e]),
        ]
        for e, s, _ in reference_windows(lengths, horizon, pad_before, pad_after, selected)
    ]
    return np.array(rows, dtype=np.int64).reshape(-1, 4)


# sequence_indices ---------------------------------------------------------------------------------


def test_sequence_indices_golden() -> None:
    # Episode 0 (3 frames) has starts -1, 0, 1; episode 1 (2 frames) has -1, 0.
    got = sequence_indices([3, 5], 4, pad_before=1, pad_after=2)
    assert got.dtype == np.int64
    assert got.tolist() == [[0, 3, 1, 4], [0, 3, 0, 3], [1, 3, 0, 2], [3, 5, 1, 3], [3, 5, 0, 2]]


def test_sequence_indices_short_episode_still_yields_one_padded_window() -> None:
    # Diffusion Policy's create_indices yields nothing for the 1-frame episode.
    assert sequence_indices([1], 4, pad_before=1, pad_after=1).tolist() == [[0, 1, 1, 2]]
    assert sequence_indices([2, 3], 8, pad_before=1, pad_after=3).tolist() == [
        [0, 2, 1, 3],
        [2, 3, 1, 2],
    ]


def test_sequence_indices_match_reference_exhaustively() -> None:
    rng = np.random.default_rng(0)
    checked = 0
    for horizon, n_obs, n_action in STEP_COMBOS:
        for _ in range(60):
            lengths = random_lengths(rng, horizon)
            mask = rng.random(len(lengths)) < 0.7
            selected = set(np.flatnonzero(mask).tolist())
            before, after = n_obs - 1, n_action - 1
            got = sequence_indices(np.cumsum(lengths), horizon, before, after, mask)
            want = reference_indices(lengths, horizon, before, after, selected)
            np.testing.assert_array_equal(got, want)
            unmasked = sequence_indices(np.cumsum(lengths), horizon, before, after)
            np.testing.assert_array_equal(
                unmasked, reference_indices(lengths, horizon, before, after)
            )
            checked += len(unmasked)
    assert checked > 5000


def test_sequence_indices_errors() -> None:
    with pytest.raises(ValueError, match="strictly increasing"):
        sequence_indices([3, 3, 5], 2)
    with pytest.raises(
        ValueError, match="`pad_before` and `pad_after` must be <= sequence_length - 1"
    ):
        sequence_indices([3], 2, pad_before=2)
    with pytest.raises(ValueError, match=r"`sequence_length` must be an integer >= 1\. Got 0"):
        sequence_indices([3], 0)
    with pytest.raises(ValueError, match="`episode_mask` must be a boolean array of shape"):
        sequence_indices([3, 5], 2, episode_mask=[1, 0])
    assert sequence_indices(np.zeros(0, dtype=np.int64), 2).shape == (0, 4)


# split_episodes -----------------------------------------------------------------------------------


def one_task(n: int) -> np.ndarray:
    return np.zeros(n, dtype=np.int32)


SIX_TASKS = np.repeat(np.arange(6, dtype=np.int32), 50)  # the real config: 6 tasks × 50 episodes


def test_split_is_reproducible_disjoint_and_complete() -> None:
    train, val = split_episodes(50, 0.2, seed=3, task_ids=one_task(50))
    again_train, again_val = split_episodes(50, 0.2, seed=3, task_ids=one_task(50))
    np.testing.assert_array_equal(train, again_train)
    np.testing.assert_array_equal(val, again_val)
    assert train.dtype == val.dtype == np.int64
    assert len(val) == 10
    assert not set(train) & set(val)
    assert sorted([*train, *val]) == list(range(50))
    assert not np.array_equal(val, split_episodes(50, 0.2, seed=4, task_ids=one_task(50))[1])


def test_split_golden_and_edge_sizes() -> None:
    # One task: Diffusion Policy's get_val_mask draw, default_rng(seed).choice(n, n_val, replace=False).
    assert [a.tolist() for a in split_episodes(10, 0.2, 0, one_task(10))] == [
        [0, 1, 2, 3, 4, 5, 8, 9],
        [6, 7],
    ]
    assert len(split_episodes(50, 0.02, 0, one_task(50))[1]) == 1
    assert len(split_episodes(3, 0.001, 0, one_task(3))[1]) == 1  # at least one val episode
    assert [len(a) for a in split_episodes(2, 0.99, 0, one_task(2))] == [1, 1]  # one train
    assert [len(a) for a in split_episodes(1, 0.5, 0, one_task(1))] == [1, 0]
    assert [len(a) for a in split_episodes(7, 0.0, 0, one_task(7))] == [7, 0]


@pytest.mark.parametrize("n", [1, 2, 3, 10, 50])
@pytest.mark.parametrize("val_ratio", [0.0, 0.02, 0.2, 0.5, 0.99])
@pytest.mark.parametrize("seed", [0, 1, 7])
def test_split_one_task_is_the_unstratified_draw(n, val_ratio, seed) -> None:
    is_val = np.zeros(n, dtype=bool)
    if val_ratio > 0:
        n_val = min(max(1, round(n * val_ratio)), n - 1)
        is_val[np.random.default_rng(seed).choice(n, size=n_val, replace=False)] = True
    train, val = split_episodes(n, val_ratio, seed, np.full(n, 4))  # the id itself does not matter
    assert train.tolist() == np.flatnonzero(~is_val).tolist()
    assert val.tolist() == np.flatnonzero(is_val).tolist()


@pytest.mark.parametrize("seed", range(10))
def test_split_validates_every_task_of_the_real_config(seed) -> None:
    train, val = split_episodes(300, 0.02, seed, SIX_TASKS)
    assert sorted(SIX_TASKS[val].tolist()) == [0, 1, 2, 3, 4, 5]  # exactly one per task
    assert sorted([*train, *val]) == list(range(300))
    assert train.dtype == val.dtype == np.int64


def test_split_stratified_is_reproducible_and_seeded() -> None:
    # Interleaved tasks: episodes of a task need not be contiguous.
    task_ids = np.tile(np.arange(6), 50)
    train, val = split_episodes(300, 0.1, 5, task_ids)
    again_train, again_val = split_episodes(300, 0.1, 5, list(task_ids))
    np.testing.assert_array_equal(train, again_train)
    np.testing.assert_array_equal(val, again_val)
    assert np.bincount(task_ids[val]).tolist() == [5] * 6
    assert not np.array_equal(val, split_episodes(300, 0.1, 6, task_ids)[1])
    # SIX_TASKS at seed 0: the unstratified draw left tasks 2 and 4 without a val episode.
    assert split_episodes(300, 0.02, 0, SIX_TASKS)[1].tolist() == [42, 81, 125, 163, 215, 252]


@pytest.mark.parametrize("val_ratio", [0.001, 0.3, 0.5, 0.7, 0.99])
@pytest.mark.parametrize("seed", [0, 3])
def test_split_keeps_training_episodes_of_every_task(val_ratio, seed) -> None:
    # Task sizes 1..6, shuffled over the episode indices; task ids need not be 0..k-1.
    task_ids = np.random.default_rng(seed).permutation(
        np.repeat([3, 9, 11, 20, 21, 40], range(1, 7))
    )
    train, val = split_episodes(len(task_ids), val_ratio, seed, task_ids)
    assert sorted([*train, *val]) == list(range(len(task_ids)))
    for task, size in zip([3, 9, 11, 20, 21, 40], range(1, 7), strict=True):
        n_val = int((task_ids[val] == task).sum())
        assert (task_ids[train] == task).sum() >= 1  # no task loses all its training episodes
        expected = 0 if size == 1 else min(max(1, round(size * val_ratio)), size - 1)
        assert n_val == expected, (task, size)


def test_split_single_episode_tasks_stay_in_training() -> None:
    task_ids = np.array([0, 1, 1, 1, 2, 3, 3])  # tasks 0 and 2 have one episode each
    for seed in range(10):
        train, val = split_episodes(7, 0.5, seed, task_ids)
        assert {0, 4} <= set(train.tolist())
        # Task 1: round(3 * 0.5) = 2 of 3; task 3: round(2 * 0.5) = 1 of 2.
        assert sorted(task_ids[val].tolist()) == [1, 1, 3]
    assert [a.tolist() for a in split_episodes(3, 0.9, 0, [0, 1, 2])] == [[0, 1, 2], []]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((10, 1.0, 0), r"`val_ratio` must be in \[0, 1\). Got 1.0"),
        ((10, -0.1, 0), r"`val_ratio` must be in \[0, 1\). Got -0.1"),
        ((10, "0.1", 0), r"`val_ratio` must be a number in \[0, 1\). Got '0.1'"),
        ((0, 0.1, 0), r"`n_episodes` must be an integer >= 1. Got 0"),
        ((10, 0.1, 1.5), r"`seed` must be an integer >= 0. Got 1.5"),
        ((10, 0.1, -1), r"`seed` must be an integer >= 0. Got -1"),
    ],
)
def test_split_errors(args, message) -> None:
    with pytest.raises(ValueError, match=message):
        split_episodes(*args, task_ids=one_task(10))


@pytest.mark.parametrize(
    ("task_ids", "message"),
    [
        (one_task(9), r"`task_ids` must have one entry per episode: 10 \(`n_episodes`\)\. Got 9"),
        (one_task(11), r"`task_ids` must have one entry per episode: 10 \(`n_episodes`\)\. Got 11"),
        ([], r"`task_ids` must have one entry per episode: 10 \(`n_episodes`\)\. Got 0"),
        (np.zeros(10), r"`task_ids` must be a 1-D sequence of integer task ids.*Got float64"),
        (np.zeros((2, 5), dtype=int), r"`task_ids` must be a 1-D sequence.*shape \(2, 5\)"),
        (["a"] * 10, r"`task_ids` must be a 1-D sequence of integer task ids"),
    ],
)
def test_split_task_id_errors(task_ids, message) -> None:
    with pytest.raises(ValueError, match=message):
        split_episodes(10, 0.1, 0, task_ids)


# LimitsNormalizer ---------------------------------------------------------------------------------


def fitted_normalizer() -> tuple[LimitsNormalizer, np.ndarray]:
    rng = np.random.default_rng(1)
    x = rng.normal(size=(200, 5)) * [1.0, 10.0, 0.01, 1.0, 1.0] + [0.0, 5.0, -3.0, 0.0, 0.0]
    x[:, 3] = 0.25  # constant: the idle arm
    x[:, 4] = 7.0 + rng.random(200) * 5e-5  # below RANGE_EPS: treated as constant
    return LimitsNormalizer.fit(x), x


def test_normalizer_maps_limits_to_unit_range_and_constants_to_zero() -> None:
    normalizer, x = fitted_normalizer()
    y = x * normalizer.scale + normalizer.offset
    np.testing.assert_allclose(y[:, :3].min(axis=0), -1.0, atol=1e-12)
    np.testing.assert_allclose(y[:, :3].max(axis=0), 1.0, atol=1e-12)
    assert np.all(y[:, 3] == 0.0)
    assert np.all(np.abs(y[:, 4]) <= 2.5e-5)
    assert normalizer.scale[3:].tolist() == [1.0, 1.0]
    back = (y - normalizer.offset) / normalizer.scale
    np.testing.assert_allclose(back, x, rtol=1e-12, atol=1e-12)
    assert np.array_equal(back[:, 3], x[:, 3])  # constants come back exactly


def test_normalizer_state_dict_round_trip(tmp_path) -> None:
    normalizer, _ = fitted_normalizer()
    state = normalizer.state_dict()
    assert json.loads(json.dumps(state)) == state
    torch.save({"normalizer": state}, tmp_path / "n.pt")
    loaded = torch.load(tmp_path / "n.pt", weights_only=True)["normalizer"]
    restored = LimitsNormalizer.from_state_dict(loaded)
    assert restored.dim == 5
    assert np.array_equal(restored.scale, normalizer.scale)
    assert np.array_equal(restored.offset, normalizer.offset)
    assert restored.state_dict() == state


def test_normalizer_errors() -> None:
    _, x = fitted_normalizer()
    bad = x.copy()
    bad[3, 1] = np.nan
    bad[5, 2] = np.inf
    with pytest.raises(ValueError, match=r"Got 2 NaN or infinite entries, in dimensions \[1, 2\]"):
        LimitsNormalizer.fit(bad)
    with pytest.raises(ValueError, match=r"shape \(N, D\)"):
        LimitsNormalizer.fit(np.zeros(5))
    with pytest.raises(ValueError, match="Missing"):
        LimitsNormalizer.from_state_dict({"scale": [1.0]})
    with pytest.raises(ValueError, match="same length"):
        LimitsNormalizer.from_state_dict({"scale": [1.0], "offset": [0], "min": [0], "max": []})
    with pytest.raises(ValueError, match="finite"):
        LimitsNormalizer.from_state_dict({"scale": [1], "offset": [0], "min": [0], "max": [np.nan]})


# OverlayDataset -----------------------------------------------------------------------------------


def assert_samples_equal(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=0, equal_nan=True)


def check_against_reference(store: Store, dataset: OverlayDataset, selected) -> None:
    to = dataset.n_obs_steps
    windows = reference_windows(
        store.lengths, dataset.horizon, to - 1, dataset.n_action_steps - 1, selected
    )
    assert len(dataset) == len(windows)
    for i, (episode, _, frames) in enumerate(windows):
        sample = dataset[i]
        obs = frames[:to]
        start = store.starts[episode]
        now = frames[to - 1]
        assert np.array_equal(sample["current"].numpy(), store.image[obs])
        assert sample["current"][:, 0, 0, 0].tolist() == [episode] * to
        assert sample["current"][:, 1, 0, 0].tolist() == [f - start for f in obs]
        if dataset.memory:
            assert np.array_equal(sample["initial"].numpy(), store.image[[start] * to])
        else:
            assert "initial" not in sample
        assert np.array_equal(sample["agent_pos"].numpy(), store.state[obs])
        assert np.array_equal(sample["action"].numpy(), store.action[frames])
        assert sample["task"].item() == store.task_id[episode]
        assert sample["episode"].item() == episode
        assert sample["frame"].item() == now - start
        assert sample["path_status"].item() == store.path_status[now]
        np.testing.assert_array_equal(sample["target_visible"].numpy(), store.target_visible[now])


def test_sample_contract_shapes_and_dtypes(make_store) -> None:
    store = make_store([5, 1, 7], channels=6, size=16)
    sample = OverlayDataset(store.path, horizon=8, n_obs_steps=2, n_action_steps=4)[0]
    expected = {
        "current": ((2, 6, 16, 16), torch.uint8),
        "initial": ((2, 6, 16, 16), torch.uint8),
        "agent_pos": ((2, 14), torch.float32),
        "action": ((8, 14), torch.float32),
        "task": ((), torch.int64),
        "episode": ((), torch.int64),
        "frame": ((), torch.int64),
        "target_visible": ((), torch.float32),
        "path_status": ((), torch.int64),
    }
    assert {key: (tuple(v.shape), v.dtype) for key, v in sample.items()} == expected


@pytest.mark.parametrize(
    ("channels", "size", "shard_frames"), [(3, 8, None), (6, 16, 4), (3, 16, 3), (6, 8, None)]
)
def test_dataset_windows_match_reference_exhaustively(make_store, channels, size, shard_frames):
    rng = np.random.default_rng(channels * 100 + size)
    lengths = random_lengths(rng, 16)
    store = make_store(lengths, channels=channels, size=size, seed=size, shard_frames=shard_frames)
    for combo_index, (horizon, n_obs, n_action) in enumerate(STEP_COMBOS):
        selected = None
        if combo_index % 2:
            selected = sorted(rng.choice(len(lengths), rng.integers(1, len(lengths) + 1), False))
        dataset = OverlayDataset(
            store.path,
            horizon=horizon,
            n_obs_steps=n_obs,
            n_action_steps=n_action,
            episodes=selected,
            memory=combo_index % 3 != 2,
        )
        check_against_reference(store, dataset, None if selected is None else set(selected))


def test_dataset_normalizer_uses_only_its_episodes(make_store) -> None:
    store = make_store([4, 1, 6, 3], channels=6, size=8)
    dataset = OverlayDataset(
        store.path, horizon=4, n_obs_steps=2, n_action_steps=3, episodes=np.array([2, 0])
    )
    rows = np.r_[0:4, 5:11]
    want = LimitsNormalizer.fit(store.action[rows]).state_dict()
    assert dataset.action_normalizer().state_dict() == want
    assert dataset.episodes.tolist() == [0, 2]


def test_dataset_for_a_policy_takes_its_windows_and_memory(make_store) -> None:
    store = make_store([9, 5])
    policy = PolicyConfig.defaults(horizon=6, n_obs_steps=3, n_action_steps=4, memory="current")
    dataset = OverlayDataset.for_policy(store.path, policy, [1])
    assert (dataset.horizon, dataset.n_obs_steps, dataset.n_action_steps) == (6, 3, 4)
    assert not dataset.memory and dataset.episodes.tolist() == [1]
    assert "initial" not in dataset[0]


def test_dataset_pickles_without_its_store_handle(make_store) -> None:
    store = make_store([3, 5])
    dataset = OverlayDataset(store.path, horizon=4, n_obs_steps=2, n_action_steps=3)
    first = dataset[0]
    clone = pickle.loads(pickle.dumps(dataset))
    assert clone._image is None
    assert_samples_equal(clone[0], first)
    assert_samples_equal(clone[-1], dataset[len(dataset) - 1])
    with pytest.raises(IndexError):
        dataset[len(dataset)]


def test_images_in_memory_give_the_stores_samples_in_the_workers_too(make_store) -> None:
    store = make_store([9, 1, 4, 12], channels=6, size=8)
    from_store = OverlayDataset(store.path, horizon=6, n_obs_steps=2, n_action_steps=4)
    in_memory = OverlayDataset(store.path, horizon=6, n_obs_steps=2, n_action_steps=4)
    images = in_memory.load_images()
    assert isinstance(images, np.ndarray) and images.nbytes == from_store.image_nbytes
    for i in range(len(from_store)):
        assert_samples_equal(in_memory[i], from_store[i])
    held = take(make_loader(in_memory, 4, num_workers=2, seed=7), 5)
    for a, b in zip(held, take(make_loader(from_store, 4, seed=7), 5), strict=True):
        assert_samples_equal(a, b)
    other = OverlayDataset(store.path, horizon=6, n_obs_steps=2, n_action_steps=4, episodes=[1])
    assert other.load_images(images) is images
    with pytest.raises(ValueError, match=r"are not .*'s"):
        other.load_images(images[:3])


def test_epoch_batches_resume_where_they_stopped():
    full = iter(EpochBatches(50, 8, seed=3))
    batches = [next(full) for _ in range(20)]  # 6 per epoch: crosses three epoch boundaries
    resumed = iter(EpochBatches(50, 8, seed=3, start_step=7))
    assert [next(resumed) for _ in range(13)] == batches[7:]
    first_epoch = [i for batch in batches[:6] for i in batch]
    assert len(first_epoch) == len(set(first_epoch)) == 48
    assert batches[:6] != [next(iter(EpochBatches(50, 8, seed=4))) for _ in range(6)]
    with pytest.raises(ValueError, match="fewer than batch_size"):
        EpochBatches(5, 8, seed=0)


def take(loader, n: int) -> list[dict]:
    batches = iter(loader)
    return [next(batches) for _ in range(n)]


def test_training_loader_is_seeded_and_the_same_with_workers(make_store) -> None:
    store = make_store([9, 1, 4, 12, 2, 7], channels=6, size=8)
    dataset = OverlayDataset(store.path, horizon=6, n_obs_steps=2, n_action_steps=4)
    dataset[0]  # the parent holds an open handle when the workers fork
    per_epoch = len(dataset) // 4
    serial = take(make_loader(dataset, 4, seed=7), 2 * per_epoch + 1)  # into a third epoch
    parallel = take(make_loader(dataset, 4, num_workers=2, seed=7), 2 * per_epoch + 1)
    for a, b in zip(serial, parallel, strict=True):
        assert_samples_equal(a, b)
    order = torch.cat([batch["frame"] * 100 + batch["episode"] for batch in serial])
    first, second = order[: 4 * per_epoch], order[4 * per_epoch : 8 * per_epoch]
    assert len(set(first.tolist())) == len(first)  # an epoch draws each sample once at most
    assert not torch.equal(first, second)  # each epoch is reshuffled
    other = take(make_loader(dataset, 4, seed=8), per_epoch)
    assert not torch.equal(torch.cat([b["frame"] * 100 + b["episode"] for b in other]), first)
    resumed = take(make_loader(dataset, 4, seed=7, start_step=per_epoch + 1), 3)
    for a, b in zip(resumed, serial[per_epoch + 1 :], strict=False):
        assert_samples_equal(a, b)


def test_loader_without_a_seed_reads_once_in_order(make_store) -> None:
    store = make_store([9, 1, 4, 12])
    dataset = OverlayDataset(store.path, horizon=6, n_obs_steps=2, n_action_steps=4)
    serial = list(make_loader(dataset, 4))
    parallel = list(make_loader(dataset, 4, num_workers=2))
    assert len(serial) == -(-len(dataset) // 4)
    for a, b in zip(serial, parallel, strict=True):
        assert_samples_equal(a, b)
    for i, sample in enumerate([dataset[i] for i in range(len(dataset))]):
        assert_samples_equal({k: v[i % 4] for k, v in serial[i // 4].items()}, sample)


# Errors -------------------------------------------------------------------------------------------


def test_horizon_validation_explains_the_short_action_slice(make_store) -> None:
    message = (
        r"the policy executes action\[n_obs_steps-1 : n_obs_steps-1\+n_action_steps\] = "
        r"action\[1:17\] of a chunk of 16 actions, which would silently hold only 15 actions "
        r"instead of 16\. Got horizon=16, n_obs_steps=2, n_action_steps=16; use n_action_steps "
        r"<= 15 or horizon >= 17\."
    )
    with pytest.raises(ValueError, match=message):
        check_horizon(16, 2, 16)
    check_horizon(16, 2, 15)
    with pytest.raises(ValueError, match=r"`n_obs_steps` must be an integer >= 1\. Got 0"):
        check_horizon(16, 0, 8)
    with pytest.raises(ValueError, match=r"`n_action_steps` must be an integer >= 1\. Got True"):
        check_horizon(16, 2, True)
    store = make_store([3])
    with pytest.raises(ValueError, match=r"action\[1:17\]"):
        OverlayDataset(store.path, horizon=16, n_obs_steps=2, n_action_steps=16)


def test_missing_store_message(tmp_path) -> None:
    missing = tmp_path / "results" / "datasets" / "oracle-overlay.zarr"
    with pytest.raises(StoreError, match=r"No dataset store at .*oracle-overlay\.zarr\. Build"):
        OverlayDataset(missing, horizon=4, n_obs_steps=2, n_action_steps=3)


def test_format_version_mismatch_message(make_store) -> None:
    store = make_store([3, 2], attrs={"format_version": READ_FORMAT_VERSION + 1})
    message = (
        rf"{store.path} has format_version {READ_FORMAT_VERSION + 1}, but this code reads "
        rf"format_version {READ_FORMAT_VERSION}\. Delete the store and re-run the consolidation"
    )
    with pytest.raises(ValueError, match=message):
        OverlayDataset(store.path, horizon=4, n_obs_steps=2, n_action_steps=3)


def test_wrong_format_and_bad_episodes_messages(make_store) -> None:
    store = make_store([3, 2], attrs={"format": "diffusion_policy.replay_buffer"})
    with pytest.raises(ValueError, match="is not an overlayflow dataset store"):
        OverlayDataset(store.path, horizon=4, n_obs_steps=2, n_action_steps=3)
    store = make_store([3, 2])
    with pytest.raises(ValueError, match=r"indices in \[0, 2\) .* Got \[2\]"):
        OverlayDataset(store.path, horizon=4, n_obs_steps=2, n_action_steps=3, episodes=[0, 2])
    with pytest.raises(ValueError, match="at least one episode"):
        OverlayDataset(store.path, horizon=4, n_obs_steps=2, n_action_steps=3, episodes=[])
