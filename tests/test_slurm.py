"""profiles/slurm on a real one-node SLURM cluster (ci/slurm/up.sh): the workflow runs to the end,
the GPU rules run as SLURM jobs in the GPU partition with a GPU allocated, a failing GPU job
fails the run with its log named, and a training signalled before its time limit checkpoints and
its retry resumes.

The partitions, GPUs, groups and retries are the profile's own; only test-sized overrides go on
the command line: the config, hardware sizes (memory, CPUs, threads) and status polling. Needs
root and SLURM (ci/slurm/install.sh); skipped, with the reason, otherwise.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from conftest import REPO, run_snakemake, snakemake_cmd
from test_workflow import TINY, TINY_TRAINING, write_config

from overlayflow import synthetic
from overlayflow.policy.checkpoint import load_checkpoint

pytestmark = [pytest.mark.slow, pytest.mark.workflow]

SCRIPTS = REPO / "ci" / "slurm"
PROFILE = REPO / "profiles" / "slurm"
DAEMONS = ("munged", "slurmctld", "slurmd", "sbatch", "squeue", "scancel")
# A whole run may take this long before `timeout` stops Snakemake (which then cancels its jobs).
RUN_LIMIT = 600  # about 3 minutes alone on 2 cores; room for a loaded machine

# A path experiment and the no-path baseline: two trainings, as two GPU jobs at once.
EXPERIMENTS = {
    "oracle-overlay": {"layout": "overlay", "source": "oracle"},
    "rgb": {"layout": "rgb", "memory": "current"},
}

# Test-sized hardware: the profile asks for real nodes (64 GB, 8 CPUs per GPU), this node has
# 2 cores. SLURM here does not enforce memory, so a small request is only bookkeeping.
TEST_RESOURCES = {"mem_mb": 1000, "cpus_per_task": 1, "cpus_per_gpu": 1}


@dataclass(frozen=True)
class Cluster:
    base: Path
    bring_up_seconds: float

    def jobcomp(self) -> dict[str, dict[str, str]]:
        """Finished jobs by id, from the jobcomp/filetxt log (key=value fields, one job a line)."""
        path = self.base / "log" / "jobcomp.txt"
        lines = path.read_text().splitlines() if path.exists() else []
        records = [dict(re.findall(r"(\w+)=(\S*)", line)) for line in lines]
        return {r["JobId"]: r for r in records if "JobId" in r}


def profile() -> dict:
    return yaml.safe_load((PROFILE / "profile.yaml").read_text())


def partitions_of(settings: dict) -> tuple[str, ...]:
    """Every partition the profile names, default first: the cluster must have them all."""
    names = [settings.get("default-resources", {}).get("slurm_partition", "cpu")]
    names += [r.get("slurm_partition") for r in settings.get("set-resources", {}).values()]
    return tuple(dict.fromkeys(n for n in names if n))


def gpu_partition(settings: dict, rule: str) -> str:
    rules = settings.get("set-resources", {})
    return rules.get(rule, {}).get("slurm_partition") or partitions_of(settings)[0]


def resource_overrides(settings: dict) -> list[str]:
    """The profile's default-resources and set-resources with TEST_RESOURCES in place of its
    hardware sizes. On the command line a profile key is replaced whole, so the rest is restated.
    """
    defaults = {**settings.get("default-resources", {})}
    defaults.update({k: v for k, v in TEST_RESOURCES.items() if k in defaults})
    per_rule = {
        rule: {**values, **{k: v for k, v in TEST_RESOURCES.items() if k in values}}
        for rule, values in settings.get("set-resources", {}).items()
    }
    args = ["--default-resources", *(f"{k}={v}" for k, v in defaults.items())]
    if per_rule:
        args.append("--set-resources")
        args += [f"{rule}:{k}={v}" for rule, values in per_rule.items() for k, v in values.items()]
    return args


def tail(text: str, lines: int = 40) -> str:
    return "\n".join(text.splitlines()[-lines:])


def run_slurm(
    workdir: Path, config: Path, *args: str, settings: dict | None = None
) -> subprocess.CompletedProcess:
    """Snakemake with the SLURM profile (resources from ``settings``, by default the profile's);
    leftover jobs are cancelled whatever happens."""
    env = dict(os.environ)
    env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", "")
    command = [
        "timeout",
        "-k",
        "15",
        str(RUN_LIMIT),
        *snakemake_cmd(),
        *args,
        "--directory",
        str(workdir),
        "--profile",
        str(PROFILE),
        "--configfile",
        str(config),
        "--jobs",
        "4",
        # Caps the CPUs of a group job (the profile's per-episode batches) at this node's: without
        # it a group asks the sum of its members' CPUs and pends forever (PartitionConfig).
        "--cores",
        str(os.cpu_count()),
        "--latency-wait",
        "5",
        # One torch thread per job: SLURM here does not bind jobs to their cores (task/none), and
        # two-thread trainings next to other jobs on 2 cores ran 15× slower.
        "--set-threads",
        "train=1",
        "evaluate=1",
        # No accounting database here: sacct cannot answer, squeue does (MinJobAge=300).
        "--slurm-status-command",
        "squeue",
        # The first status check 1 s after a submission; the plugin then adds 10 s per check
        # that finds no job finished (checks at +1, +12, +33 s ...).
        "--slurm-init-seconds-before-status-checks",
        "1",
        *resource_overrides(settings or profile()),
    ]
    try:
        return subprocess.run(
            command, cwd=REPO, capture_output=True, text=True, env=env, timeout=RUN_LIMIT + 60
        )
    finally:
        cancel_jobs()


def cancel_jobs() -> None:
    queued = subprocess.run(["squeue", "-h", "-o", "%A"], capture_output=True, text=True)
    if queued.stdout.split():
        subprocess.run(["scancel", *queued.stdout.split()], capture_output=True, timeout=30)


def free_ports(n: int) -> int:
    """A base port with ``n`` free ports from it on 127.0.0.1."""
    for base in range(19000 + os.getpid() % 2000, 65000, 10):
        try:
            for port in range(base, base + n):
                with socket.socket() as s:
                    s.bind(("127.0.0.1", port))
        except OSError:
            continue
        return base
    raise RuntimeError("no free ports on 127.0.0.1")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    if os.geteuid() != 0:
        pytest.skip("a SLURM cluster needs root (ci/slurm/up.sh starts munged/slurmctld/slurmd)")
    missing = [name for name in DAEMONS if shutil.which(name) is None]
    if missing:
        pytest.skip(f"SLURM is not installed ({', '.join(missing)} missing): ci/slurm/install.sh")
    base = tmp_path_factory.mktemp("slurm")
    partitions = partitions_of(profile())
    started = time.monotonic()
    try:
        try:
            up = subprocess.run(
                [SCRIPTS / "up.sh", base, *partitions], capture_output=True, text=True, timeout=120
            )
            output = up.stdout + up.stderr
        except subprocess.TimeoutExpired:
            up, output = None, f"ci/slurm/up.sh did not finish in 120 s; logs under {base}/log"
        if up is None or up.returncode != 0:
            pytest.skip(f"the SLURM test cluster did not come up:\n{tail(output)}")
        yield Cluster(base, time.monotonic() - started)
    finally:
        down = subprocess.run(
            [SCRIPTS / "down.sh", base], capture_output=True, text=True, timeout=120
        )
        assert down.returncode == 0, down.stdout + down.stderr


def job_environment(log: Path) -> dict[str, str]:
    """The `environment:` line every job log starts with (overlayflow.logs.script_log)."""
    return job_environment_of(log.read_text(), str(log))


def job_environment_of(text: str, name: str = "the log") -> dict[str, str]:
    for line in text.splitlines():
        if "overlayflow.job: environment:" in line:
            return dict(re.findall(r"(\w+)=(\S*)", line.split("environment:", 1)[1]))
    raise AssertionError(f"{name} has no 'environment:' line:\n{tail(text, 10)}")


def test_workflow_runs_with_gpu_jobs_on_slurm(cluster, tmp_path):
    """Oracle + a launched stand-in HAMSTER on 2 shards, two experiments, on 2 tiny episodes."""
    settings = profile()
    # The episodes are input data: written here, not by a SLURM job, to save one round of jobs.
    root = tmp_path / "robotwin"
    synthetic.write_task(
        root,
        "place_block",
        2,
        setting="demo_clean",
        cameras=("head_camera",),
        width=64,
        height=48,
        step=0.08,
    )
    config = {
        **TINY,
        "data": {"root": str(root), "tasks": ["place_block"], "episodes": 2},
        "synthetic": {"enabled": False},
        "paths": {
            "sources": {
                "oracle": {"kind": "oracle"},
                "hamster": {
                    "kind": "vlm",
                    "launch": f"{sys.executable} -m overlayflow.paths.standin --protocol hamster "
                    "--port {port}",
                    "shards": 2,
                    "base_port": free_ports(3),  # two shards, then the retry job
                    "ready_timeout": 60,
                },
            }
        },
        "datasets": {"sources": ["oracle"], "layouts": ["overlay", "rgb"]},
        "train": TINY_TRAINING["train"],
        "experiments": EXPERIMENTS,
        "evaluate": TINY_TRAINING["evaluate"],
    }
    paths = [
        f"results/paths/{s}/place_block/episode{i}.json"
        for s in ("oracle", "hamster")
        for i in (0, 1)
    ]
    evaluations = [f"results/eval/{name}.json" for name in EXPERIMENTS]
    started = time.monotonic()
    result = run_slurm(tmp_path, write_config(tmp_path, config), *paths, *evaluations)
    print(
        f"SLURM: cluster up in {cluster.bring_up_seconds:.1f} s, run {time.monotonic() - started:.1f} s"
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, tail(output, 80)
    # A healthy run needs no retry: a retried job hides a failure the profile's `retries` may not
    # cover on a real run.
    assert "Trying to restart job" not in output, tail(output, 120)

    for path in paths:
        assert (tmp_path / path).exists()
    for dataset in ("oracle-overlay", "rgb"):
        assert (tmp_path / f"results/datasets/{dataset}.zarr").is_dir()
    for path in evaluations:
        assert json.loads((tmp_path / path).read_text())["step"] == TINY_TRAINING["train"]["steps"]

    jobcomp = cluster.jobcomp()
    gpu_logs = {
        "path_shard": [f"logs/paths/hamster/shard{n}.log" for n in range(2)],
        "train": [f"logs/train/{name}.log" for name in EXPERIMENTS],
    }
    for rule, logs in gpu_logs.items():
        partition = gpu_partition(settings, rule)
        for log in logs:
            env = job_environment(tmp_path / log)
            job_id = env.get("SLURM_JOB_ID", "")
            assert job_id.isdigit(), f"{log}: not run as a SLURM job: {env}"
            assert re.fullmatch(r"\d+(,\d+)*", env.get("CUDA_VISIBLE_DEVICES", "")), (
                f"{log}: no GPU allocated: {env}"
            )
            assert env.get("SLURM_JOB_PARTITION") == partition, f"{log}: {env}"
            assert job_id in jobcomp, f"{log}: job {job_id} is not in the jobcomp log"
            assert jobcomp[job_id]["Partition"] == partition, jobcomp[job_id]
            assert jobcomp[job_id]["JobState"] == "COMPLETED", jobcomp[job_id]


def test_a_failing_gpu_job_fails_the_run_and_names_its_log(cluster, tmp_path):
    """A VLM source whose server exits at once: its shard job (a GPU job) fails, so does the run."""
    config = {
        **TINY,
        "data": {"tasks": ["place_block"], "episodes": 1},
        "paths": {
            "sources": {
                "broken": {
                    "kind": "vlm",
                    "launch": "false {port}",
                    "shards": 1,
                    "base_port": free_ports(2),  # the shard, then the retry job
                    "ready_timeout": 5,
                }
            }
        },
    }
    path = write_config(tmp_path, config)
    # The episodes and the shard plan are made locally: only the shard job matters here.
    plan = run_snakemake(
        tmp_path, "results/paths/broken/plan.json", "--cores", "2", "--configfile", str(path)
    )
    assert plan.returncode == 0, tail(plan.stderr)
    shard = "results/paths/broken/shards/shard0.json"
    # No retry: it would fail the same way, and after a failure the plugin's status polling backs
    # off, so each attempt costs ~30 s here.
    result = run_slurm(tmp_path, path, shard, "--retries", "0")
    output = result.stdout + result.stderr
    assert result.returncode not in (0, 124), tail(output)
    assert "logs/paths/broken/shard0.log" in output, tail(output, 80)
    log = (tmp_path / "logs/paths/broken/shard0.log").read_text()
    assert "server 'false" in log and "exited" in log, tail(log, 20)
    assert not (tmp_path / shard).exists()


def test_training_checkpoints_before_the_time_limit_and_the_retry_resumes(cluster, tmp_path):
    """The profile's `--signal=USR1@<s>` on the train rule, with a 2-minute limit and the signal
    80 s before it: SLURM signals the job, the training writes latest.pt and fails, and the
    profile's retry resumes from that step (and is signalled in turn: the steps never run out).

    SLURM's signal timer runs on its own period, so on a loaded machine the limit's SIGTERM can
    come before the USR1 (seen once in CI): the training takes both alike, and either counts."""
    settings = profile()
    train = settings["set-resources"]["train"]
    assert "--signal=USR1@" in train["slurm_extra"], train
    # Only the signal may write latest.pt: periodic checkpoints and validation never come.
    never = 10**6
    config = {
        **TINY,
        "data": {"tasks": ["place_block"], "episodes": 2},
        "paths": {"sources": {"oracle": {"kind": "oracle"}}},
        "datasets": {"sources": ["oracle"], "layouts": ["rgb"]},
        "train": {
            **TINY_TRAINING["train"],
            "steps": never,
            "checkpoint_every": never,
            "val_every": never,
            "log_every": 50,
        },
        "experiments": {"rgb": {"layout": "rgb", "memory": "current"}},
    }
    path = write_config(tmp_path, config)
    # The dataset is made locally: only the training matters here.
    local = run_snakemake(
        tmp_path, "results/datasets/rgb.zarr", "--cores", "2", "--configfile", str(path)
    )
    assert local.returncode == 0, tail(local.stderr)
    # SLURM sends the signal within ~30 s of it falling due (its timer's period), so 80 s before
    # a 2-minute limit gives the training 40 s to start and the signal time to arrive before the
    # limit. The job's own Snakemake takes ~20 s to start on a busy 2-core machine: with 20 s in
    # all, CI once saw the signal end an attempt before the training had begun.
    limited = {**train, "runtime": 2, "slurm_extra": "'--signal=USR1@80'"}
    settings["set-resources"]["train"] = limited
    result = run_slurm(tmp_path, path, "results/train/rgb/model.pt", settings=settings)
    output = result.stdout + result.stderr
    assert result.returncode not in (0, 124), tail(output)
    assert "logs/train/rgb.log" in output, tail(output, 80)

    logs = sorted(
        (tmp_path / ".snakemake/slurm_logs/rule_train").rglob("*.log"), key=lambda p: int(p.stem)
    )
    attempts = [log.read_text() for log in logs]
    assert len(attempts) == 2, f"expected a job and its retry, got {[str(p) for p in logs]}"
    stopped_at = []
    training_log = tmp_path / "logs/train/rgb.log"
    for i, text in enumerate(attempts):
        assert "overlayflow.job: environment:" in text, (
            f"attempt {i + 1} did not start the training:\n{tail(text, 30)}\n"
            f"{training_log}:\n{tail(training_log.read_text(), 30)}"
        )
        env = job_environment_of(text)
        assert env.get("SLURM_JOB_PARTITION") == train["slurm_partition"], env
        match = re.search(r"Interrupted: SIG(?:USR1|TERM) at step (\d+)/", text)
        assert match, tail(text, 30)
        stopped_at.append(int(match[1]))
    first, second = attempts
    assert f"steps 0 → {never}" in first, tail(first, 30)
    assert f"steps {stopped_at[0]} → {never}" in second, tail(second, 30)
    assert 0 < stopped_at[0] < stopped_at[1], stopped_at
    latest = load_checkpoint(tmp_path / "results/train/rgb/latest.pt")
    assert latest["step"] == stopped_at[1]
