"""The deployed policy sees what the dataset holds: the replay test of the observation builder.

An episode replayed through the deployed policy (a fake RoboTwin ``TASK_ENV`` serving the
recorded frames and joint states, actions ignored) must hand the network exactly the ``current``,
``initial`` and ``agent_pos`` tensors of the dataset's sample of the same frame, for every frame,
layout and memory mode, with paths from a VLM source asked online (stand-in servers over
loopback) and from the oracle (its path file replayed).
"""

import numpy as np
import pytest
import torch
from deploy_fixtures import store_normalizer, tiny_policy, tiny_settings
from standin import path_source, stand_ins

from overlayflow.dataset.samples import OverlayDataset
from overlayflow.dataset.store import EpisodeInput, consolidate
from overlayflow.overlays.observation import ObservationBuilder
from overlayflow.overlays.render import render_frames, render_paths
from overlayflow.paths.asking import run_shard, vlm_records
from overlayflow.paths.records import read_episode_paths, write_episode_paths
from overlayflow.policy.deploy import DeployedPolicy, DeployError
from overlayflow.policy.online import OnlinePaths, RecordedPaths, asks
from overlayflow.policy.robotwin import RoboTwinPolicy, evaluate_step, reset_model
from overlayflow.robotwin.index import EpisodeIndex
from overlayflow.testing import overlay_settings, write_oracle_episodes

SIZE = (32, 32)
# Every 3rd answer of both stand-ins is prose: the same frames fail, and hold, in both. Requests
# are numbered per server, so every replay must ask a multiple of 3 frames (checked below).
STANDIN = ["--protocol", "hamster", "--prose-every", "3"]
EVERY = 3


class ReplayEnv:
    """RoboTwin's TASK_ENV serving one recorded episode; the actions it is given are ignored."""

    def __init__(self, frames, states, instruction, camera="head_camera"):
        self.frames, self.states, self.instruction, self.camera = (
            frames,
            states,
            instruction,
            camera,
        )
        self.take_action_cnt, self.step_lim, self.eval_success = 0, len(frames), False

    def get_obs(self):
        i = self.take_action_cnt
        rgb = {"rgb": self.frames[i], "intrinsic_cv": np.eye(3), "extrinsic_cv": np.eye(4)[:3]}
        return {
            "observation": {self.camera: rgb, "left_camera": {"rgb": self.frames[i]}},
            "joint_action": {"vector": self.states[i].astype(np.float64)},
            "endpose": {},
        }

    def get_instruction(self):
        return self.instruction

    def take_action(self, action, action_type="qpos"):
        assert action_type == "qpos"
        self.take_action_cnt += 1


@pytest.fixture(scope="module")
def recorded(tmp_path_factory):
    """One episode: its index, raw frames, states, oracle path file; a VLM path file asked from
    one stand-in and a second stand-in (same failures) for the deployment to ask."""
    root = tmp_path_factory.mktemp("deploy")
    ((index_file, oracle_file),) = write_oracle_episodes(
        root, ("place_block",), 1, every=4, step=0.2
    )
    index = EpisodeIndex.load(index_file)
    n = index.samples
    with index.open() as episode:
        frames = [episode.frame(i) for i in range(n)]
        states = episode.state_action(index.action_convention)[0][:n]
    with stand_ins(root, {"dataset": STANDIN, "deploy": STANDIN}) as servers:
        assert len([t for t in range(n) if asks(t, EVERY)]) % 3 == 0
        source = path_source(
            "hamster", every=EVERY, retries=0, timeout=20, urls=[[servers["dataset"].url]]
        )
        run_shard(source, 0, [[index.key]], {index.key: index}, root / "journal", root / "logs")
        vlm_file = root / "paths" / "hamster" / "episode0.json"
        records = vlm_records(source, index, root / "journal")
        write_episode_paths(vlm_file, "hamster", "vlm", index, records, EVERY)
        online = path_source(
            "hamster", every=EVERY, retries=0, timeout=20, urls=[[servers["deploy"].url]]
        )
        yield {
            "root": root,
            "index_file": index_file,
            "index": index,
            "frames": frames,
            "states": states,
            "paths": {"oracle": oracle_file, "hamster": vlm_file},
            "online": online,
            "stand_in": servers["deploy"],
        }


def build_store(recorded, source, layout):
    root = recorded["root"]
    frames = root / "frames.zarr"
    if not frames.exists():
        render_frames(recorded["index_file"], frames, SIZE)
    parts = None
    if layout != "rgb":
        parts = root / "overlays" / f"{source}.zarr"
        if not parts.exists():
            render_paths(
                recorded["index_file"], recorded["paths"][source], parts, overlay_settings(SIZE)
            )
    store = root / f"{source}-{layout}.zarr"
    if not store.exists():
        inputs = [EpisodeInput(recorded["index_file"], frames, parts)]
        consolidate(store, inputs, layout=layout, source=source)
    return store


def replay(deployed, recorded):
    """The network inputs of every step of the episode replayed through RoboTwin's loop."""
    seen = []
    dim = deployed.action_dim

    def sample_chunk(obs, generator=None, steps=None, noise=None, features=None):
        given = {key: value.clone() for key, value in obs.items()}
        seen.append((given, {key: value.clone() for key, value in (features or {}).items()}))
        return torch.zeros(len(obs["current"]), deployed.policy.cfg.horizon, dim)

    deployed.policy.sample_chunk = sample_chunk
    env = ReplayEnv(recorded["frames"], recorded["states"], recorded["index"].instruction)
    model = RoboTwinPolicy(deployed, "replay")
    reset_model(model)
    while env.take_action_cnt < env.step_lim:
        evaluate_step(env, model, env.get_obs())
        if env.eval_success:
            break
    return seen, model.episode


CASES = [
    (source, layout, memory)
    for source in ("oracle", "hamster")
    for layout in ("overlay", "concat6")
    for memory in ("initial+current", "current")
] + [(None, "rgb", memory) for memory in ("initial+current", "current")]


@pytest.mark.parametrize(("source", "layout", "memory"), CASES)
def test_the_network_sees_what_the_dataset_holds(recorded, source, layout, memory):
    store = build_store(recorded, source or "oracle", layout)
    settings = tiny_settings(3 if layout != "concat6" else 6, memory)
    policy = tiny_policy(settings, store_normalizer(store))
    if source == "hamster":
        stand_in = recorded["stand_in"]
        before = stand_in.requests()
        paths = OnlinePaths(recorded["online"], recorded["online"].urls[0][0])
    elif source == "oracle":
        paths = RecordedPaths.from_file(read_episode_paths(recorded["paths"]["oracle"]))
    else:
        paths = None
    builder = ObservationBuilder.from_settings(overlay_settings(SIZE))
    deployed = DeployedPolicy(
        policy, layout=layout, camera="head_camera", builder=builder, paths=paths
    )
    seen, episode = replay(deployed, recorded)

    n = len(recorded["frames"])
    dataset = OverlayDataset(
        store, horizon=2, n_obs_steps=2, n_action_steps=1, memory=memory == "initial+current"
    )
    samples = {int(sample["frame"]): sample for sample in dataset}
    assert len(seen) == len(samples) == n  # one chunk of one action per step
    keys = ["current", "agent_pos"] + (["initial"] if memory == "initial+current" else [])
    for frame, (given, features) in enumerate(seen):
        assert sorted(given) == sorted([*keys, "task"])
        for key in keys:
            assert given[key].dtype == samples[frame][key].dtype, key
            assert torch.equal(given[key][0], samples[frame][key]), f"{key} of frame {frame}"
        # The memory is encoded once per episode (its features come with the observation):
        # the network is conditioned exactly as on the sample.
        assert sorted(features) == (["initial"] if memory == "initial+current" else [])
        sample = {key: value[None] for key, value in samples[frame].items()}
        want = policy.encode_obs(sample)
        got = policy.encode_obs(given, features=features)
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5, msg=f"frame {frame}")
    if source == "hamster":
        assert stand_in.requests() - before == len([t for t in range(n) if asks(t, EVERY)])
        file = read_episode_paths(recorded["paths"]["hamster"])
        assert dict(episode.statuses) == {
            status: count for status, count in file["counts"].items() if count and status != "held"
        }
        assert episode.statuses["parse_error"] > 0  # failed answers were held, as in the dataset


def test_a_camera_missing_from_the_observation_is_named(recorded):
    store = build_store(recorded, "oracle", "rgb")
    policy = tiny_policy(tiny_settings(3, "current"), store_normalizer(store))
    builder = ObservationBuilder(SIZE)
    deployed = DeployedPolicy(policy, layout="rgb", camera="front_camera", builder=builder)
    env = ReplayEnv(recorded["frames"], recorded["states"], "x")
    with pytest.raises(
        DeployError,
        match=r"camera 'front_camera' \(config key data.camera\) is not in the observation; it "
        r"has \['head_camera', 'left_camera'\]",
    ):
        deployed.observe(deployed.new_episode(), env.get_obs(), "x")


def test_a_joint_state_of_another_embodiment_is_refused(recorded):
    store = build_store(recorded, "oracle", "rgb")
    policy = tiny_policy(tiny_settings(3, "current"), store_normalizer(store))
    deployed = DeployedPolicy(
        policy, layout="rgb", camera="head_camera", builder=ObservationBuilder(SIZE)
    )
    env = ReplayEnv(recorded["frames"], [np.zeros(16)] * 3, "x")
    with pytest.raises(DeployError, match=r"shape \(16,\); the policy was trained on 14-D"):
        deployed.observe(deployed.new_episode(), env.get_obs(), "x")


@pytest.mark.parametrize(("every", "asked"), [(0, [0]), (1, [0, 1, 2, 3, 4]), (3, [0, 3])])
def test_the_cadence_counts_environment_steps(every, asked):
    assert [t for t in range(5) if asks(t, every)] == asked
