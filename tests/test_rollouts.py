"""Rollouts on the synthetic table-top: batched as one-by-one, the policy once per chunk, paths
asked online at the source's cadence (and held through the designed occlusion), a dying server,
the result files, and the rule in a real Snakemake run.

The policies are untrained tiny checkpoints (`deploy_fixtures`): what is tested is the loop, not
the success rate.
"""

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import run_snakemake
from deploy_fixtures import TINY, write_model
from standin import path_source, stand_ins
from test_faults import alive, processes, wait_for
from test_workflow import TINY as TINY_WORKFLOW
from test_workflow import TINY_TRAINING, jobs, write_config

from overlayflow import config
from overlayflow.policy.deploy import DeployedPolicy
from overlayflow.policy.online import asks
from overlayflow.policy.rollouts import (
    BatchPaths,
    animated,
    run_batch,
    run_rollouts,
    start_rollout,
)
from overlayflow.policy.rollouts_job import env_maker, rollouts_job
from overlayflow.policy.rollouts_stats import hidden_steps, summarize, wilson_interval
from overlayflow.schema import ConfigError
from overlayflow.settings import SimSettings, TrainSettings
from overlayflow.synthetic import Expert, TableTopEnv, hidden_frames, physics
from overlayflow.testing import overlay_settings, write_store

TASKS = ("place_block", "place_block_occluded")
SIZE = (32, 32)
STEP = 0.04  # the panel hides the object for 6 steps (frames 2-7)
FIRST = 100000
N_ACTION_STEPS = 3
Z2 = 1.959963984540054**2


def make_env(task: str, index: int, step_lim: int = 14) -> TableTopEnv:
    return TableTopEnv(
        task, index, cameras=("head_camera",), width=96, height=72, step=STEP, step_lim=step_lim
    )


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny networks on a shared machine: a second thread only waits for the first."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """Untrained tiny checkpoints of both tasks: rgb and overlay layout, with memory."""
    root = tmp_path_factory.mktemp("rollouts")
    out = {}
    for layout in ("rgb", "overlay"):
        store = write_store(root, layout, SIZE, tasks=TASKS, per_task=1, step=0.08)
        policy = {
            **TINY,
            "image_channels": 3,
            "memory": "initial+current",
            "n_action_steps": N_ACTION_STEPS,
            "n_tasks": len(TASKS),
        }
        settings = TrainSettings.defaults(device="cpu", policy=policy)
        out[layout] = write_model(root / f"{layout}.pt", store, settings, tasks=TASKS)
    return out


def deployed(model: Path, task: str, layout: str = "rgb", paths=None) -> DeployedPolicy:
    overlay = overlay_settings(SIZE)
    return DeployedPolicy.load(
        model, layout=layout, camera="head_camera", overlay=overlay, task=task, paths=paths
    )


# --- the numbers ----------------------------------------------------------------------------------


def test_wilson_interval_has_the_known_values():
    """Against the interval's definition, solved another way: the p whose score test just
    rejects, (p̂ − p)² = z² p (1 − p) / n, found by bisection; 0/n and n/n in closed form."""
    for k, n, low, high in [
        (0, 10, 0.0, Z2 / (10 + Z2)),
        (5, 10, 0.2365931, 0.7634069),
        (10, 10, 10 / (10 + Z2), 1.0),
        (81, 100, 0.7222115, 0.8748525),
        (1, 3, 0.0614919, 0.7923404),
    ]:
        got = wilson_interval(k, n)
        assert got == pytest.approx((low, high), abs=1e-6), (k, n)
    assert wilson_interval(0, 0) == (0.0, 1.0)
    with pytest.raises(ValueError, match="successes must be in"):
        wilson_interval(4, 3)


def test_an_occlusion_is_a_long_hidden_stretch_that_begins_far_from_the_gripper():
    far, near = 0.2, 0.01
    visible, hidden = [1.0] * 3, [0.0] * 5
    assert hidden_steps(visible + hidden + visible, [far] * 13) == 5
    assert hidden_steps(visible + hidden[:4] + visible, [far] * 12) is None  # too short
    assert hidden_steps(visible + hidden + visible, [near] * 13) is None  # the gripper's doing
    summary = summarize(
        [
            {"task": "a", "success": True, "steps": 10, "occluded": True},
            {"task": "a", "success": False, "steps": 20, "occluded": False},
        ]
    )
    assert summary["trials"] == 2 and summary["mean_steps"] == 15
    assert summary["by_occlusion"]["occluded"]["successes"] == 1
    assert summary["by_task"]["a"]["by_occlusion"]["visible"]["trials"] == 1


@pytest.mark.parametrize("task", TASKS)
def test_the_expert_is_occluded_only_in_the_occluded_variant(task):
    """Plain place_block hides the object behind the gripper at the grasp: not an occlusion."""
    env = make_env(task, FIRST, step_lim=None)
    expert, reach = Expert(STEP), []
    while not env.eval_success and env.take_action_cnt < env.step_lim:
        reach.append(float(np.linalg.norm(env.state.tip[:2] - env.state.obj[:2])))
        env.take_action(expert(env))
    reach.append(0.0)
    assert env.eval_success
    occluded = task.endswith("_occluded")
    assert hidden_steps(env.visibility, reach) == (len(hidden_frames(STEP)) if occluded else None)


def test_sampling_with_given_noise_is_the_policys_own_sampling(models):
    """Noise passed in is the noise the policy would have drawn: the same chunk."""
    policy = deployed(models["rgb"], "place_block").policy
    b, cfg = 3, policy.cfg
    obs = {
        "current": torch.randint(0, 255, (b, 2, 3, *SIZE), dtype=torch.uint8),
        "initial": torch.randint(0, 255, (b, 1, 3, *SIZE), dtype=torch.uint8).expand(
            b, 2, 3, *SIZE
        ),
        "agent_pos": torch.randn(b, 2, cfg.state_dim),
        "task": torch.tensor([0, 1, 0]),
    }
    noise = torch.randn((b, cfg.horizon, cfg.action_dim), generator=torch.manual_seed(7))
    expected = policy.sample_chunk(obs, generator=torch.manual_seed(7))
    given = policy.sample_chunk(obs, noise=noise)
    torch.testing.assert_close(given, expected, rtol=0, atol=0)


# --- the batch ------------------------------------------------------------------------------------


def uneven_env(task: str, index: int) -> TableTopEnv:
    """Rollouts that end at different steps (an untrained policy never succeeds): 7, 10, 13."""
    return make_env(task, index, step_lim=7 + 3 * (index % 3))


def test_batched_rollouts_act_as_one_by_one(models):
    """Same seeds, same actions, same results, whatever the batch (5 rollouts: a batch of 3
    whose members drop out at different steps, then 2)."""
    indexes = list(range(FIRST, FIRST + 5))
    runs = {}
    for batch in (3, 1):
        policies = {task: deployed(models["rgb"], task) for task in TASKS}
        runs[batch] = run_rollouts(policies, uneven_env, indexes, batch)
    batched, alone = runs[3], runs[1]
    assert batched.results == alone.results
    for a, b in zip(batched.actions, alone.actions, strict=True):
        np.testing.assert_array_equal(a, b)
    assert alone.calls == sum(r["chunks"] for r in alone.results)
    assert batched.calls < alone.calls
    assert [r["steps"] for r in batched.results] == [7 + 3 * (i % 3) for i in indexes] * 2
    assert [r["index"] for r in batched.results] == indexes * 2


def test_the_policy_runs_once_per_chunk_on_the_whole_batch(models):
    policy = deployed(models["rgb"], "place_block")
    sizes = []
    encode = policy.policy.encode_obs

    def spy(obs, augment=False, features=None):
        sizes.append(len(obs["agent_pos"]))
        return encode(obs, augment, features)

    policy.policy.encode_obs = spy
    indexes = range(FIRST, FIRST + 3)
    group = [start_rollout(policy, uneven_env, "place_block", i) for i in indexes]
    calls = run_batch(policy, group)
    # Rollouts of 10, 13 and 7 steps, 3 actions a chunk: 4, 5 and 3 chunks.
    assert [len(r.actions) for r in group] == [10, 13, 7]
    assert [r.calls for r in group] == [4, 5, 3]
    assert calls == len(sizes) == 5
    assert sizes == [3, 3, 3, 2, 1]  # one network call per chunk; finished rollouts drop out


def test_animated_rollouts_take_each_task_in_turn():
    assert animated(["a", "b"], [7, 8, 9], 3) == [("a", 7), ("b", 7), ("a", 8)]
    assert animated(["a"], [7], 5) == [("a", 7)]


# --- paths asked online ---------------------------------------------------------------------------


def test_paths_are_asked_at_the_cadence_and_held_through_the_occlusion(models, tmp_path):
    """Every 2nd step of every rollout is asked, on two stand-in servers together; behind the
    panel the stand-in finds nothing, and the policy draws the last good path."""
    every = 2
    with stand_ins(tmp_path, {"a": ["--protocol", "hamster"], "b": ["--protocol", "hamster"]}) as s:
        urls = [s["a"].url, s["b"].url]
        source = path_source("hamster", every=every, retries=0, timeout=20, urls=[urls])
        paths = BatchPaths(source, urls)
        seen = []
        answer_all = paths.answer_all

        def spy(asked):
            records = answer_all(asked)
            seen.extend((a[3], r["status"]) for a, r in zip(asked, records, strict=True))
            return records

        paths.answer_all = spy
        policies = {task: deployed(models["overlay"], task, "overlay", paths) for task in TASKS}
        done = run_rollouts(policies, make_env, [FIRST, FIRST + 1], 2, paths)
        paths.close()
        served = s["a"].requests() + s["b"].requests()
    for r in done.results:
        # Observed steps: the first frame and after every action but the last.
        expected = len([t for t in range(r["steps"]) if asks(t, every)])
        assert r["paths_asked"] == expected
        assert r["occluded"] == r["task"].endswith("_occluded")
    assert served == paths.requests == sum(r["paths_asked"] for r in done.results)
    assert s["a"].requests() > 0 and s["b"].requests() > 0  # both servers took frames
    statuses = {label: status for label, status in seen}
    for index in (FIRST, FIRST + 1):
        occluded = f"place_block_occluded scene {index} step"
        assert statuses[f"{occluded} 0"] == "ok"  # a path to hold
        behind = [t for t in hidden_frames(STEP) if asks(t, every)]
        assert all(statuses[f"{occluded} {t}"] != "ok" for t in behind)
        assert all(statuses[f"place_block scene {index} step {t}"] == "ok" for t in behind)


# --- the job and its files ------------------------------------------------------------------------


def job_settings(**sim):
    settings = config.load(
        {
            "data": {"tasks": list(TASKS), "episodes": 2},
            "synthetic": {"width": 96, "height": 72, "step": STEP, "cameras": ["head_camera"]},
            "overlay": {"size": list(SIZE)},
            "previews": {"episodes": 3, "max_frames": 8},
            "sim": {"episodes": 3, "batch": 2, "step_lim": 8, **sim},
        }
    )
    return settings


def test_the_job_writes_success_rates_the_table_and_animations(models, tmp_path):
    settings = job_settings()
    gifs = [tmp_path / "anim" / f"rollout{i}.gif" for i in range(3)]
    result = rollouts_job(
        "e",
        models["rgb"],
        layout="rgb",
        camera="head_camera",
        tasks=TASKS,
        sim=settings.sim,
        synthetic=settings.synthetic,
        overlay=settings.overlay,
        previews=settings.previews,
        source=None,
        log_dir=tmp_path / "logs",
        output=tmp_path / "e.json",
        table=tmp_path / "e.csv",
        animations=gifs,
        device="cpu",
    )
    assert json.loads((tmp_path / "e.json").read_text()) == result
    for key in ("experiment", "simulator", "path_source", "trials", "successes", "success_rate"):
        assert key in result
    assert result["trials"] == 6 and result["path_source"] is None
    assert result["interval"] == [0.0, round(wilson_interval(0, 6)[1], 4)]
    assert result["mean_steps"] == 8 and result["policy_calls"] == 2 * 2 * math.ceil(8 / 3)
    assert set(result["by_task"]) == set(TASKS)
    assert result["by_occlusion"]["occluded"]["trials"] == 3
    assert result["scenes"]["first_index"] == FIRST
    table = pd.read_csv(tmp_path / "e.csv")
    assert len(table) == 6 and set(table["index"]) == {FIRST, FIRST + 1, FIRST + 2}
    assert list(table.columns[:5]) == ["experiment", "task", "index", "success", "steps"]
    assert "occluded" in table.columns and "hidden_steps" in table.columns
    assert all(gif.stat().st_size > 0 for gif in gifs)
    assert not list(tmp_path.rglob("*.partial"))


def test_test_scenes_are_not_training_scenes():
    assert SimSettings.from_dict(config.load({}).sim.to_dict()).first_index == FIRST
    with pytest.raises(ConfigError, match=r"sim\.first_index"):
        config.load({"data": {"episodes": 10}, "sim": {"first_index": 9}})
    with pytest.raises(ConfigError, match=r"sim\.first_index"):
        config.load({"data": {"episodes": [3, 200]}, "sim": {"first_index": 100}})
    assert config.load({"data": {"episodes": 10}, "sim": {"first_index": 10}}).sim.first_index


def test_the_grasp_tolerance_reaches_the_simulator():
    settings = config.load({"sim": {"tolerance": 0.05}})
    env = env_maker(settings.synthetic, settings.sim, "head_camera")("place_block", FIRST)
    assert env.tolerance == 0.05
    assert config.load({}).sim.tolerance == physics.GRASP_TOLERANCE
    # A closing gripper 4 cm from the block's centre takes it only at the wider tolerance.
    scene, tip = env.scene, env.scene.object_start + np.array([0.04, 0.0, 0.0])
    state = physics.start(scene, tip, 1.0, env.state.rot)
    assert not physics.advance(scene, state, tip, 0.0, env.state.rot).held
    assert physics.advance(scene, state, tip, 0.0, env.state.rot, tolerance=0.05).held


# --- a server that dies, a job that is killed -----------------------------------------------------

DRIVER = r"""
import json, sys
from pathlib import Path
sys.path.insert(0, sys.argv[2])
from test_rollouts import TASKS, job_settings
from standin import path_source
from overlayflow.logs import script_log
from overlayflow.policy.rollouts_job import rollouts_job

import torch
torch.set_num_threads(1)
a = json.loads(sys.argv[1])
settings = job_settings(episodes=4, step_lim=20)
with script_log(a["log"]):
    rollouts_job(
        "e", a["model"], layout="overlay", camera="head_camera", tasks=TASKS,
        sim=settings.sim, synthetic=settings.synthetic, overlay=settings.overlay,
        previews=settings.previews, source=path_source(**a["source"]),
        log_dir=Path(a["logs"]), output=Path(a["output"]), table=Path(a["table"]), device="cpu",
    )
"""


def start_job(models, tmp_path: Path, stats: Path) -> tuple[subprocess.Popen, Path]:
    serve = f"{sys.executable} -m overlayflow.paths.standin --protocol hamster --port {{port}}"
    source = {
        "name": "hamster",
        "launch": f"{serve} --latency 0.02 --stats-file {stats}",
        "retries": 1,
        "backoff": 0.05,
        "timeout": 10,
        "ready_timeout": 30,
    }
    log = tmp_path / "job.log"
    args = {
        "model": str(models["overlay"]),
        "source": source,
        "log": str(log),
        "logs": str(tmp_path / "logs"),
        "output": str(tmp_path / "e.json"),
        "table": str(tmp_path / "e.csv"),
    }
    tests = str(Path(__file__).parent)
    argv = [sys.executable, "-c", DRIVER, json.dumps(args), tests]
    env = {**os.environ, "PYTHONPATH": tests + os.pathsep + os.environ.get("PYTHONPATH", "")}
    job = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    return job, log


def stand_ins_of(stats: Path) -> list[int]:
    return processes(lambda argv: "overlayflow.paths.standin" in argv and str(stats) in argv)


def served(stats: Path) -> int:
    return json.loads(stats.read_text())["requests"] if stats.exists() else 0


@pytest.mark.slow
def test_a_server_that_dies_fails_the_job_naming_it(models, tmp_path):
    stats = tmp_path / "stats.json"
    job, log = start_job(models, tmp_path, stats)
    try:
        assert wait_for(lambda: served(stats) >= 5, 60), "the rollouts never asked the server"
        (server,) = stand_ins_of(stats)
        os.kill(server, signal.SIGKILL)
        assert job.wait(timeout=60) != 0
    finally:
        if job.poll() is None:
            job.kill()
    text = log.read_text()
    assert "RolloutError: the path server http://127.0.0.1:" in text
    assert "of source 'hamster' failed" in text and "hamster-server.log" in text
    assert "rerun the job" in text
    assert not (tmp_path / "e.json").exists()
    assert wait_for(lambda: not stand_ins_of(stats), 10)


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["term", "kill"])
def test_a_killed_job_leaves_no_server_and_a_rerun_starts_again(models, tmp_path, sig):
    stats = tmp_path / "stats.json"
    job, _ = start_job(models, tmp_path, stats)
    try:
        assert wait_for(lambda: served(stats) >= 5, 60)
        (server,) = stand_ins_of(stats)
        job.send_signal(sig)
        job.wait(timeout=30)
    finally:
        if job.poll() is None:
            job.kill()
    assert wait_for(lambda: not alive(server), 10), "the server outlived the job"
    stats.unlink()
    rerun, _ = start_job(models, tmp_path, stats)
    assert rerun.wait(timeout=120) == 0
    result = json.loads((tmp_path / "e.json").read_text())
    assert (
        served(stats)
        == result["path_requests"]
        == sum(e["paths_asked"] for e in result["episodes"])
    )
    assert not stand_ins_of(stats)


# --- the rule -------------------------------------------------------------------------------------


def rollout_config(tmp_path: Path) -> Path:
    config = {
        **TINY_WORKFLOW,
        **TINY_TRAINING,
        "paths": {"sources": {"oracle": {"kind": "oracle"}}},
        "sim": {"episodes": 2, "batch": 2, "step_lim": 6},
    }
    return write_config(tmp_path, config)


def test_every_experiment_that_acts_online_gets_its_rollouts(tmp_path):
    """Oracle-trained experiments need sim.path_source; the rgb one needs no path."""
    cfg = rollout_config(tmp_path)
    dry = run_snakemake(tmp_path, "-n", "--configfile", str(cfg))
    assert dry.returncode == 0, dry.stderr[-3000:]
    assert jobs(dry.stdout)["sim_rollouts"] == 1
    assert "results/sim/synthetic/rgb-cur-s0.json" in dry.stdout


@pytest.mark.slow
def test_the_rule_rolls_out_a_trained_experiment(tmp_path):
    cfg = rollout_config(tmp_path)
    target = "results/sim/synthetic/rgb-cur-s0.json"
    started = time.monotonic()
    run = run_snakemake(tmp_path, target, "--cores", "2", "--configfile", str(cfg))
    assert run.returncode == 0, run.stderr[-3000:]
    result = json.loads((tmp_path / target).read_text())
    assert result["trials"] == 4 and result["tasks"] == ["place_block", "stack_cube"]
    assert result["mean_steps"] == 6 and result["scenes"]["first_index"] == FIRST
    assert len(pd.read_csv(tmp_path / "results/sim/synthetic/rgb-cur-s0.csv")) == 4
    assert (tmp_path / "results/sim/synthetic/rgb-cur-s0/rollout0.gif").exists()
    log = (tmp_path / "logs/sim/synthetic/rgb-cur-s0/rollouts.log").read_text()
    assert "rollouts of rgb-cur-s0: 4/4 rollouts done" in log
    assert time.monotonic() - started < 300
