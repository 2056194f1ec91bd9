"""The policy folder in a RoboTwin checkout, driven the way RoboTwin's eval_policy.py drives it.

A fake RoboTwin root (``script/eval_policy.py`` present) gets the folder written by
`write_policy_folder`; a subprocess whose working directory is that root imports it exactly as
eval_policy.py does (``sys.path.append("./")``, ``sys.path.append("./policy")``,
``importlib.import_module(policy_name)``), builds ``usr_args`` from the folder's yml and eval.sh's
overrides, and runs eval_policy.py's loop over a fake ``TASK_ENV`` serving synthetic frames.
"""

import json
import subprocess
import sys

import numpy as np
import pytest
import yaml
from deploy_fixtures import tiny_settings, write_model
from standin import stand_ins

from overlayflow import cli
from overlayflow.paths.records import query_frames
from overlayflow.paths.vlm import ServerError
from overlayflow.policy.checkpoint import CheckpointError
from overlayflow.policy.robotwin import get_model
from overlayflow.policy.robotwin_folder import (
    RobotwinError,
    check_name,
    eval_command,
    write_policy_folder,
)
from overlayflow.robotwin.index import EpisodeIndex
from overlayflow.schema import ConfigError
from overlayflow.testing import write_store

EVERY = 3
TRIALS = [
    {"episode": 0, "step_lim": 10, "success_at": None},
    {"episode": 1, "step_lim": 10, "success_at": 5},
]

# eval_policy.py's way, step by step: its sys.path, its import, its usr_args, its loop.
DRIVER = r"""
import ast, hashlib, importlib, json, sys
import numpy as np, yaml

sys.path.append("./")
sys.path.append("./policy")
policy_name, episodes_file, trials_json, out = sys.argv[1:5]
overrides = sys.argv[5:]
with open(f"policy/{policy_name}/deploy_policy.yml", encoding="utf-8") as f:
    usr_args = yaml.safe_load(f)


def literal(value):  # eval_policy.py eval()s each value; literals are what it can turn into
    try:
        return ast.literal_eval(value)
    except (ValueError, SyntaxError):
        return value


usr_args.update({overrides[i].lstrip("-"): literal(overrides[i + 1]) for i in range(0, len(overrides), 2)})
get_model = getattr(importlib.import_module(policy_name), "get_model")
usr_args["left_arm_dim"], usr_args["right_arm_dim"] = 6, 6
model = get_model(usr_args)
eval_func = getattr(importlib.import_module(policy_name), "eval")
reset_func = getattr(importlib.import_module(policy_name), "reset_model")

policy = model.deployed.policy
calls, chunks = [], []
sample, unnormalize = policy.sample_chunk, policy.unnormalize


def spy_sample(obs, generator=None, steps=None, noise=None, features=None):
    calls.append({k: v.clone() for k, v in obs.items()})
    return sample(obs, generator, steps, noise, features)


def spy_unnormalize(x):
    y = unnormalize(x)
    chunks.append((x.clone(), y.clone()))
    return y


policy.sample_chunk, policy.unnormalize = spy_sample, spy_unnormalize
episodes = np.load(episodes_file)


class TaskEnv:
    def __init__(self, episode, step_lim, success_at):
        self.frames, self.states = episodes[f"frames{episode}"], episodes[f"states{episode}"]
        self.step_lim, self.success_at = step_lim, success_at
        self.take_action_cnt, self.eval_success, self.actions = 0, False, []

    def get_obs(self):
        i = self.take_action_cnt
        camera = {"rgb": self.frames[i], "intrinsic_cv": np.eye(3)}
        state = {"vector": self.states[i]}
        return {"observation": {"head_camera": camera}, "joint_action": state, "endpose": {}}

    def get_instruction(self):
        return "pick up the green block and place it on the blue pad"

    def take_action(self, action, action_type="qpos"):
        assert action_type == "qpos"
        self.actions.append(np.asarray(action).tolist())
        self.take_action_cnt += 1
        if self.take_action_cnt == self.success_at:
            self.eval_success = True


report = {"trials": [], "after_reset": []}
first_call = 0
for trial in json.loads(trials_json):
    TASK_ENV = TaskEnv(**trial)
    reset_func(model)
    episode = model.episode
    report["after_reset"].append([episode.steps, episode.initial is None, len(episode.images)])
    while TASK_ENV.take_action_cnt < TASK_ENV.step_lim:
        observation = TASK_ENV.get_obs()
        eval_func(TASK_ENV, model, observation)
        if TASK_ENV.eval_success:
            break
    mine = calls[first_call:]
    first_call = len(calls)
    start = policy.cfg.n_obs_steps - 1
    executed = [y[0, start:start + policy.cfg.n_action_steps] for _, y in chunks[-len(mine):]]
    normalized = [x[0, start:start + policy.cfg.n_action_steps] for x, _ in chunks[-len(mine):]]
    report["trials"].append({
        "actions": TASK_ENV.actions,
        "calls": len(mine),
        "initial": hashlib.sha256(mine[0]["initial"][0, 0].numpy().tobytes()).hexdigest(),
        "first_frame": hashlib.sha256(mine[0]["current"][0, -1].numpy().tobytes()).hexdigest(),
        "initial_kept": all(bool((c["initial"] == mine[0]["initial"]).all()) for c in mine),
        "executed": np.concatenate([e.numpy() for e in executed])[: len(TASK_ENV.actions)].tolist(),
        "normalized": np.concatenate([e.numpy() for e in normalized])[: len(TASK_ENV.actions)].tolist(),
    })
with open(out, "w", encoding="utf-8") as f:
    json.dump(report, f)
"""


@pytest.fixture(scope="module")
def workflow(tmp_path_factory):
    """A trained-looking experiment (its model.pt), its config and a fake RoboTwin checkout."""
    root = tmp_path_factory.mktemp("rtpolicy")
    store = write_store(root, "overlay", (32, 32), tasks=("place_block",), per_task=2, step=0.2)
    workdir = root / "workflow"
    settings = tiny_settings(3, "initial+current", n_action_steps=3)
    write_model(workdir / "results/train/exp/model.pt", store, settings)
    write_model(workdir / "results/train/old/model.pt", store, settings, format_version=1)
    episodes = {}
    for i in range(2):
        index = EpisodeIndex.load(root / "episodes" / "place_block" / f"episode{i}.json")
        with index.open() as episode:
            episodes[f"frames{i}"] = np.stack([episode.frame(t) for t in range(index.samples)])
            episodes[f"states{i}"] = episode.state_action("next")[0][: index.samples]
    np.savez(root / "episodes.npz", **episodes)
    robotwin = root / "RoboTwin"
    (robotwin / "script").mkdir(parents=True)
    (robotwin / "script" / "eval_policy.py").write_text("# stands in for RoboTwin's evaluation\n")
    (robotwin / "policy").mkdir()
    return {"root": root, "workdir": workdir, "robotwin": robotwin, "store": store}


def write_config(path, url, **sim):
    policy = {"image_size": 32, "n_layers": 1, "width": 32, "heads": 2, "horizon": 4}
    config = {
        "data": {"root": "data", "tasks": ["place_block"], "episodes": 2},
        "synthetic": {"enabled": False},
        "paths": {
            "sources": {
                "oracle": {"kind": "oracle"},
                "hamster": {"kind": "vlm", "every": EVERY, "urls": [[url]], "retries": 0},
            }
        },
        "overlay": {"size": [32, 32]},
        "train": {"policy": {**policy, "backbone": "resnet10t", "n_action_steps": 3}},
        "experiments": {
            "exp": {"layout": "overlay", "source": "hamster"},
            "old": {"layout": "overlay", "source": "hamster"},
            "oracle-exp": {"layout": "overlay", "source": "oracle"},
        },
        "sim": sim,
    }
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.mark.slow
def test_robotwin_drives_the_policy_folder(workflow, tmp_path):
    with stand_ins(tmp_path, {"vlm": ["--protocol", "hamster"]}) as servers:
        config = write_config(tmp_path / "config.yaml", servers["vlm"].url)
        folder = write_policy_folder(
            workflow["robotwin"], configfile=config, workdir=workflow["workdir"]
        )
        assert sorted(p.name for p in folder.iterdir()) == [
            "__init__.py",
            "deploy_policy.py",
            "deploy_policy.yml",
            "eval.sh",
        ]
        overrides = eval_command("exp", "place_block")[5:]
        out = tmp_path / "report.json"
        run = subprocess.run(
            [
                sys.executable,
                "-c",
                DRIVER,
                folder.name,
                str(workflow["root"] / "episodes.npz"),
                json.dumps(TRIALS),
                str(out),
                *overrides,
            ],
            cwd=workflow["robotwin"],
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert run.returncode == 0, run.stderr[-3000:]
        requests = servers["vlm"].requests()
    report = json.loads(out.read_text())

    # The server was asked at the cadence, in environment steps, per trial: trial 1 observed
    # steps 0..9 (its limit), trial 2 steps 0..4 (it succeeded at its 5th action).
    assert requests == len(query_frames(10, EVERY)) + len(query_frames(5, EVERY))
    first, second = report["trials"]
    assert (len(first["actions"]), len(second["actions"])) == (10, 5)
    assert (first["calls"], second["calls"]) == (4, 2)  # chunks of 3 actions

    # reset_model clears the memory: each trial remembers its own first frame.
    assert report["after_reset"] == [[0, True, 0], [0, True, 0]]
    for trial in (first, second):
        assert trial["initial"] == trial["first_frame"] and trial["initial_kept"]
    assert first["initial"] != second["initial"]

    # Actions: 14 joint targets per step, unnormalized: what the network's chunk was mapped to
    # from its normalized space, and within the store's action limits (± the noise of an
    # untrained network) where those differ from [-1, 1].
    normalizer = store_limits(workflow["store"])
    for trial in (first, second):
        actions = np.array(trial["actions"])
        assert actions.shape[1:] == (14,)
        np.testing.assert_allclose(actions, trial["executed"], rtol=1e-6)
        normalized = np.array(trial["normalized"])
        moving = normalizer[1] - normalizer[0] > 1e-4
        assert not np.allclose(actions[:, moving], normalized[:, moving], atol=1e-3)
        np.testing.assert_allclose(
            normalized[:, moving],
            2
            * (actions[:, moving] - normalizer[0][moving])
            / (normalizer[1] - normalizer[0])[moving]
            - 1,
            rtol=1e-4,
            atol=1e-4,
        )


def store_limits(store):
    import zarr

    action = zarr.open_group(str(store), mode="r")["data/action"][...]
    return action.min(0), action.max(0)


def usr_args(config, workdir, experiment="exp", **more):
    return {
        "policy_name": "overlayflow_policy",
        "task_name": "place_block",
        "task_config": "demo_clean",
        "ckpt_setting": experiment,
        "seed": 0,
        "instruction_type": "unseen",
        "workdir": str(workdir),
        "configfile": str(config),
        "model": "results/train/{experiment}/model.pt",
        **more,
    }


def test_a_model_of_another_format_version_is_named(workflow, tmp_path):
    config = write_config(tmp_path / "config.yaml", "http://127.0.0.1:9")
    with pytest.raises(CheckpointError, match=r"old/model\.pt: checkpoint format .*train again"):
        get_model(usr_args(config, workflow["workdir"], "old"))


def test_an_unknown_experiment_lists_the_known_ones(workflow, tmp_path):
    config = write_config(tmp_path / "config.yaml", "http://127.0.0.1:9")
    with pytest.raises(
        ConfigError,
        match=r"experiment 'nope' is not in the config; known experiments: exp, old, oracle-exp",
    ):
        get_model(usr_args(config, workflow["workdir"], "nope"))


def test_an_oracle_experiment_needs_a_vlm_source_at_test_time(workflow, tmp_path):
    config = write_config(tmp_path / "config.yaml", "http://127.0.0.1:9")
    with pytest.raises(
        ConfigError, match=r"trained on paths of the oracle source 'oracle'.*sim\.path_source"
    ):
        get_model(usr_args(config, workflow["workdir"], "oracle-exp"))
    config = write_config(tmp_path / "config.yaml", "http://127.0.0.1:9", path_source="oracle")
    with pytest.raises(
        ConfigError,
        match=r"sim.path_source: 'oracle' is an oracle source; expected the name of a vlm source",
    ):
        get_model(usr_args(config, workflow["workdir"], "oracle-exp"))


def test_a_server_that_is_down_stops_with_the_path_stage_message(workflow, tmp_path):
    config = write_config(tmp_path / "config.yaml", "http://127.0.0.1:9")
    model = get_model(usr_args(config, workflow["workdir"]))
    episodes = np.load(workflow["root"] / "episodes.npz")
    observation = {
        "observation": {"head_camera": {"rgb": episodes["frames0"][0]}},
        "joint_action": {"vector": episodes["states0"][0]},
    }
    env = type("Env", (), {"get_instruction": lambda self: "pick it up"})()
    with pytest.raises(
        ServerError,
        match=r"VLM server http://127\.0\.0\.1:9 \(hamster\) failed on frame "
        r"'exp place_block trial 1 step 0'.*is the server running",
    ):
        model.reset()
        model.step(env, observation)


def test_a_robotwin_root_without_eval_policy_is_refused(tmp_path):
    config = write_config(tmp_path / "config.yaml", "http://127.0.0.1:9")
    with pytest.raises(
        RobotwinError, match=r"is not a RoboTwin checkout: it has no script/eval_policy\.py"
    ):
        write_policy_folder(tmp_path, configfile=config)
    assert cli.main(["robotwin-policy", "--configfile", str(config), "--root", str(tmp_path)]) == 1


@pytest.mark.parametrize("name", ["overlayflow", "numpy", "envs", "my-policy"])
def test_a_folder_name_that_would_be_shadowed_is_refused(tmp_path, name):
    (tmp_path / "envs").mkdir()
    with pytest.raises(RobotwinError, match=rf"policy name '{name}'"):
        check_name(name, tmp_path)


def test_the_command_writes_the_folder_after_checking_the_experiments(workflow, tmp_path, capsys):
    config = write_config(tmp_path / "config.yaml", "http://127.0.0.1:9")
    robotwin, workdir = str(workflow["robotwin"]), str(workflow["workdir"])
    command = ["robotwin-policy", "--configfile", str(config), "--root", robotwin]
    command += ["--workdir", workdir, "--name", "ours"]
    assert cli.main([*command, "--experiment", "old"]) == 1
    said = capsys.readouterr().err
    assert "experiment 'old': " in said and "checkpoint format" in said
    assert not (workflow["robotwin"] / "policy" / "ours").exists()
    assert cli.main([*command, "--experiment", "exp"]) == 0
    folder = workflow["robotwin"] / "policy" / "ours"
    yml = yaml.safe_load((folder / "deploy_policy.yml").read_text())
    assert yml == {
        "policy_name": "ours",
        "task_name": None,
        "task_config": None,
        "ckpt_setting": None,
        "seed": None,
        "instruction_type": "unseen",
        "workdir": workdir,
        "configfile": str(config),
        "model": "results/train/{experiment}/model.pt",
    }
    script = (folder / "eval.sh").read_text()
    assert "policy_name=ours\ntask_name=${1}\ntask_config=${2}\nckpt_setting=${3}\n" in script
    assert "cd ../.." in script
    assert "python script/eval_policy.py --config policy/$policy_name/deploy_policy.yml" in script
    assert (
        (folder / "__init__.py")
        .read_text()
        .endswith("from .deploy_policy import *  # noqa: F403\n")
    )
    (folder / "deploy_policy.py").write_text("# someone else's\n")
    assert cli.main(command) == 1
    assert "was not written by overlayflow" in capsys.readouterr().err


def test_with_robotwin_root_every_experiment_must_have_an_online_source(tmp_path):
    from overlayflow import config as cfg

    path = write_config(tmp_path / "config.yaml", "http://127.0.0.1:9")
    raw = {**yaml.safe_load(path.read_text()), "robotwin": {"root": str(tmp_path)}}
    with pytest.raises(
        ConfigError, match=r"experiment 'oracle-exp' was trained on paths of the oracle"
    ):
        cfg.load(raw)
    settings = cfg.load({**raw, "sim": {"path_source": "hamster"}})
    assert cfg.sim_source(settings, "oracle-exp").name == "hamster"
    assert settings.robotwin.tasks == ("place_block",)
    assert settings.robotwin.root == tmp_path


LAUNCHED = r"""
import json, sys, time
from overlayflow.policy.robotwin import get_model

usr_args = json.loads(sys.argv[1])
model = get_model(usr_args)  # the evaluation's servers live as long as this process
print(json.dumps({"url": model.deployed.paths.client.url}), flush=True)
time.sleep(600)
"""


@pytest.mark.slow
def test_launched_servers_live_as_long_as_the_evaluation_and_stop_on_sigterm(workflow, tmp_path):
    import signal

    import requests

    config = write_config(tmp_path / "config.yaml", "http://127.0.0.1:9")
    raw = yaml.safe_load(config.read_text())
    serve = f"{sys.executable} -m overlayflow.paths.standin --protocol hamster --port {{port}}"
    raw["paths"]["sources"]["hamster"] = {"kind": "vlm", "launch": serve, "ready_timeout": 120}
    config.write_text(yaml.safe_dump(raw))
    args = json.dumps(usr_args(config, workflow["workdir"]))
    process = subprocess.Popen(
        [sys.executable, "-c", LAUNCHED, args], stdout=subprocess.PIPE, text=True
    )
    try:
        url = json.loads(process.stdout.readline())["url"]
        assert requests.get(url + "/openapi.json", timeout=5).status_code == 200
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=60) == 143
    finally:
        process.kill()
    with pytest.raises(requests.ConnectionError):
        requests.get(url + "/openapi.json", timeout=5)
    logs = workflow["workdir"] / "logs" / "sim" / "exp" / "place_block"
    assert (logs / "hamster-server.log").exists() and not (logs / "hamster-server.pid").exists()
