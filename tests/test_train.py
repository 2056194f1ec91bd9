"""The training loop: schedule, resume equivalence, signals, checkpoints, evaluation."""

from __future__ import annotations

import errno
import json
import logging
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest
import torch

from overlayflow.dataset.samples import OverlayDataset
from overlayflow.policy import checkpoint as ck
from overlayflow.policy import train as tr
from overlayflow.policy.evaluate import write_evaluation
from overlayflow.policy.model import resolve_device
from overlayflow.settings import EvaluateSettings, TrainSettings
from overlayflow.testing import write_store

TINY = {
    "image_size": 32,
    "n_layers": 1,
    "width": 32,
    "heads": 2,
    "shared_encoder": True,
    "backbone": "resnet10t",
}


def settings(**overrides) -> TrainSettings:
    base = {
        "steps": 8,
        "batch_size": 8,
        "lr": 1e-3,
        "warmup_steps": 2,
        "val_ratio": 0.34,
        "val_batches": 1,
        "val_every": 4,
        "checkpoint_every": 4,
        "log_every": 1,
        "num_workers": 0,
        "device": "cpu",
        "policy": dict(TINY),
    }
    return TrainSettings.defaults(**{**base, **overrides})


def build_store(root, episodes: int, step: float):
    """A one-task overlay store of 32 × 32 images."""
    return write_store(
        root, "overlay", (32, 32), tasks=("place_block",), per_task=episodes, step=step
    )


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return build_store(tmp_path_factory.mktemp("train"), episodes=3, step=0.08)


def test_lr_warms_up_then_decays_to_zero():
    optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=2.0)
    scheduler = tr.lr_schedule(optimizer, warmup=4, total=12)
    assert optimizer.param_groups[0]["lr"] == 0.0  # the first step's

    def lr(step: int) -> float:
        scheduler.step_update(step)
        return optimizer.param_groups[0]["lr"]

    assert [lr(s) for s in (0, 2, 4)] == [0.0, 1.0, 2.0]
    assert lr(8) == pytest.approx(1.0)
    assert lr(12) == pytest.approx(0.0)
    assert lr(20) == pytest.approx(0.0)


def test_a_store_that_does_not_fit_the_policy_is_named(store, tmp_path):
    for policy, found in (
        ({"image_channels": 6}, "6 and n_tasks=1"),
        ({"n_tasks": 2}, "3 and n_tasks=2"),
    ):
        with pytest.raises(
            ValueError,
            match=rf"{store.name} does not fit the policy settings: the store has 3 image "
            rf"channels and 1 tasks, the settings say image_channels={found}",
        ):
            tr.train(store, tmp_path, settings(policy={**TINY, **policy}))
    assert not list(tmp_path.iterdir())


class _SignalAt(logging.Handler):
    """Sends this process ``signum`` when the loop logs step ``step`` (a real signal, mid-run)."""

    def __init__(self, step: int, signum: int) -> None:
        super().__init__()
        self.step, self.signum, self.sent = step, signum, False

    def emit(self, record):
        if not self.sent and record.getMessage().startswith(f"step {self.step}/"):
            self.sent = True
            signal.raise_signal(self.signum)


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGUSR1])
def test_interrupted_and_resumed_equals_uninterrupted(store, tmp_path, signum):
    s = settings()
    summary = tr.train(store, tmp_path / "straight", s)
    assert summary["steps"] == 8

    handler = _SignalAt(3, signum)
    logger = logging.getLogger("overlayflow.policy.train")
    logger.addHandler(handler)
    level = logger.level
    logger.setLevel(logging.INFO)
    try:
        with pytest.raises(tr.Interrupted, match=r"at step 3/8.*latest\.pt written"):
            tr.train(store, tmp_path / "resumed", s)
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
    latest = ck.load_checkpoint(tmp_path / "resumed" / "latest.pt")
    assert latest["step"] == 3
    assert not (tmp_path / "resumed" / "model.pt").exists()
    tr.train(store, tmp_path / "resumed", s)

    a = ck.load_checkpoint(tmp_path / "straight" / "latest.pt")
    b = ck.load_checkpoint(tmp_path / "resumed" / "latest.pt")
    assert a["step"] == b["step"] == 8
    for part in ("model", "ema"):
        for name, value in a[part].items():
            torch.testing.assert_close(b[part][name], value, rtol=1e-5, atol=1e-6, msg=name)
    # The metrics of the resumed run hold each step once.
    rows = pd.read_csv(tmp_path / "resumed" / "metrics.csv")
    assert rows["step"].tolist() == sorted(set(rows["step"]))


TRAIN_FOREVER = """
import json, sys
from overlayflow.logs import configure
from overlayflow.policy.train import train
from overlayflow.settings import TrainSettings
configure()
train(sys.argv[1], sys.argv[2], TrainSettings.defaults(steps=100000, batch_size=8, val_ratio=0.34,
      val_every=100000, checkpoint_every=100000, log_every=1, num_workers=int(sys.argv[4]),
      device="cpu", policy=json.loads(sys.argv[3])))
"""


def train_until_signal(store, out, workers: int, sig: int) -> str:
    """Start an endless training in a new process group, send ``sig`` to the whole group once
    the first metric row is written, and return its stderr."""
    proc = subprocess.Popen(
        [sys.executable, "-c", TRAIN_FOREVER, str(store), str(out), json.dumps(TINY), str(workers)],
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 120
        while not (out / "metrics.jsonl").exists() or not (out / "metrics.jsonl").read_text():
            assert proc.poll() is None, proc.stderr.read()
            assert time.monotonic() < deadline
            time.sleep(0.1)
        os.killpg(proc.pid, sig)  # as Ctrl-C does: the terminal signals the whole group
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode != 0, err[-2000:]
    return err


@pytest.mark.parametrize(("sig", "workers"), [(signal.SIGTERM, 0), (signal.SIGUSR1, 2)])
def test_a_signal_to_the_training_processes_leaves_a_loadable_latest(store, tmp_path, sig, workers):
    """Sent to the whole process group, DataLoader workers included, as SLURM signals a step."""
    out = tmp_path / "run"
    err = train_until_signal(store, out, workers, sig)
    assert f"Interrupted: {sig.name} at step" in err and "run the same command" in err, err[-2000:]
    ckpt = ck.load_checkpoint(out / "latest.pt")
    assert ckpt["step"] >= 1 and ckpt["format_version"] == ck.FORMAT_VERSION
    policy, _ = ck.load_policy(out / "latest.pt")
    assert not policy.training


def test_a_signal_while_the_job_starts_checkpoints_after_the_first_step(store, tmp_path):
    """SLURM's signal may come while the job still imports torch: held from the first line, it
    stops the training after one step with a checkpoint, instead of killing the job bare."""
    out = tmp_path / "run"
    early = (
        "import os, signal\n"
        "from overlayflow.interrupts import hold_early\n"
        "hold_early()\n"
        "os.kill(os.getpid(), signal.SIGUSR1)\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", early + TRAIN_FOREVER, str(store), str(out), json.dumps(TINY), "0"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode != 0, proc.stderr[-2000:]
    assert "received SIGUSR1 while starting" in proc.stderr, proc.stderr[-2000:]
    assert "Interrupted: SIGUSR1 at step 1/" in proc.stderr, proc.stderr[-2000:]
    assert ck.load_checkpoint(out / "latest.pt")["step"] == 1


def test_checkpoint_of_another_format_version_is_refused(store, tmp_path):
    tr.train(store, tmp_path, settings(steps=2, val_every=2))
    ckpt = torch.load(tmp_path / "model.pt", weights_only=True)
    ckpt["format_version"] = ck.FORMAT_VERSION + 1
    torch.save(ckpt, tmp_path / "future.pt")
    with pytest.raises(
        ck.CheckpointError, match=r"future\.pt: checkpoint format .* this code reads"
    ):
        ck.load_checkpoint(tmp_path / "future.pt")
    # Anything but tensors and plain data is refused, not unpickled.
    torch.save({"format": "overlayflow.checkpoint", "x": np.float64}, tmp_path / "pickled.pt")
    with pytest.raises(ck.CheckpointError, match="not a readable checkpoint"):
        ck.load_checkpoint(tmp_path / "pickled.pt")
    with pytest.raises(ck.CheckpointError, match="not a readable checkpoint"):
        (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
        ck.load_checkpoint(tmp_path / "junk.pt")


def test_an_older_checkpoint_loads_with_the_default_of_a_new_setting(store, tmp_path):
    tr.train(store, tmp_path, settings(steps=2, val_every=2))
    ckpt = torch.load(tmp_path / "model.pt", weights_only=True)
    for key in ck.ADDED_POLICY_SETTINGS:
        del ckpt["settings"]["policy"][key]
    torch.save(ckpt, tmp_path / "older.pt")
    policy, record = ck.load_policy(tmp_path / "older.pt")
    assert not policy.cfg.coords and record["settings"]["policy"]["coords"] is False
    assert policy.cfg.image_action_weight == 0 and not hasattr(policy, "image_action")


def test_changed_settings_start_afresh_and_keep_the_old_state(store, tmp_path):
    tr.train(store, tmp_path, settings(steps=2, val_every=2))
    tr.train(store, tmp_path, settings(steps=3, val_every=3))  # steps may grow: resumes
    assert ck.load_checkpoint(tmp_path / "latest.pt")["step"] == 3
    assert not (tmp_path / "latest.stale.pt").exists()
    tr.train(store, tmp_path, settings(steps=2, lr=5e-4, val_every=2))
    assert (tmp_path / "latest.stale.pt").exists()
    assert ck.load_checkpoint(tmp_path / "latest.pt")["settings"]["lr"] == 5e-4


def test_fewer_steps_than_the_checkpoint_train_afresh(store, tmp_path, caplog):
    """A 3-step checkpoint is not a finished 2-step training: its model would be the longer one."""
    tr.train(store, tmp_path, settings(steps=3, val_every=3))
    with caplog.at_level(logging.WARNING):
        summary = tr.train(store, tmp_path, settings(steps=2, val_every=2))
    assert "is at step 3, past this run's 2 steps; starting afresh" in caplog.text
    assert summary["steps"] == 2
    assert ck.load_checkpoint(tmp_path / "latest.pt")["step"] == 2
    assert ck.load_checkpoint(tmp_path / "latest.stale.pt")["step"] == 3


def test_another_versions_network_trains_afresh_and_is_refused_for_use(store, tmp_path, caplog):
    """Same settings, other weights: a checkpoint written by a version whose network differs."""
    tr.train(store, tmp_path, settings(steps=2, val_every=2))
    for name in ("latest.pt", "model.pt"):
        ckpt = torch.load(tmp_path / name, weights_only=True)
        for weights in ("model", "ema"):
            if weights in ckpt:
                ckpt[weights]["transformer.extra.weight"] = torch.zeros(3)
        torch.save(ckpt, tmp_path / name)
    with pytest.raises(ck.CheckpointError, match=r"model\.pt: .*1 unexpected .*another version"):
        ck.load_policy(tmp_path / "model.pt")
    with caplog.at_level(logging.WARNING):
        summary = tr.train(store, tmp_path, settings(steps=2, val_every=2))
    assert "holds another network's weights (1 unexpected" in caplog.text
    assert summary["steps"] == 2 and (tmp_path / "latest.stale.pt").exists()
    ck.load_policy(tmp_path / "model.pt")


def test_outputs_and_evaluation(store, tmp_path):
    tr.train(store, tmp_path, settings(steps=4))
    for name in ("latest.pt", "best.pt", "model.pt", "metrics.jsonl", "metrics.csv"):
        assert (tmp_path / name).exists(), name
    rows = pd.read_csv(tmp_path / "metrics.csv")
    assert {"step", "loss", "loss_flow", "loss_consistency", "lr", "grad_norm", "val_loss"} <= set(
        rows
    )
    # Validated and saved at the same step: best.pt is latest.pt, not a second copy.
    assert (tmp_path / "best.pt").samefile(tmp_path / "latest.pt")
    model = ck.load_checkpoint(tmp_path / "model.pt")
    assert model["split"]["val"] and not set(model["split"]["val"]) & set(model["split"]["train"])
    assert TrainSettings.from_dict(model["settings"]) == settings(steps=4)

    evaluation = EvaluateSettings(
        windows=12, batch_size=32, inference_steps=None, occluded_below=0.5, seed=0
    )
    summary = write_evaluation(tmp_path / "model.pt", store, tmp_path / "eval.json", evaluation)
    assert json.loads((tmp_path / "eval.json").read_text()) == json.loads(json.dumps(summary))
    windows = pd.read_csv(tmp_path / "eval.csv")
    assert len(windows) == summary["all"]["windows"] == 12
    assert set(windows["episode"]) == set(model["split"]["val"])
    # The synthetic data records visibility: every window is visible or occluded.
    assert summary["visible"]["windows"] + summary["occluded"]["windows"] == 12
    assert summary["all"]["mse"] == pytest.approx(windows["mse"].mean())
    assert summary["by_task"]["place_block"]["windows"] == 12


def test_best_stays_when_latest_moves_on(tmp_path):
    latest, best = tmp_path / "latest.pt", tmp_path / "best.pt"
    ck.save_checkpoint({"step": 1}, latest)
    ck.link_checkpoint(latest, best)
    assert best.samefile(latest)
    ck.save_checkpoint({"step": 2}, latest)
    assert torch.load(best, weights_only=True) == {"step": 1}
    assert torch.load(latest, weights_only=True) == {"step": 2}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best.pt", "latest.pt"]


@pytest.mark.faults
def test_a_full_disk_keeps_the_previous_checkpoint_and_says_so(store, tmp_path, monkeypatch):
    """The disk fills up while the second checkpoint is written (after some of its bytes)."""
    out = tmp_path / "results" / "train" / "demo"
    real_save = torch.save
    saves = []

    def save(obj, f, *args, **kwargs):
        saves.append(obj["step"])
        if len(saves) == 2:
            f.write(b"half a checkpoint")
            raise OSError(errno.ENOSPC, "No space left on device")
        real_save(obj, f, *args, **kwargs)

    monkeypatch.setattr(torch, "save", save)
    with pytest.raises(OSError) as raised:
        tr.train(store, out, settings(steps=4, checkpoint_every=2, val_ratio=0.0))
    assert raised.value.errno == errno.ENOSPC
    assert f"no space left on the device holding {out}/ while writing latest.pt" in str(
        raised.value
    )
    assert "the previous checkpoint latest.pt is intact" in str(raised.value)
    assert saves == [2, 4]
    assert ck.load_checkpoint(out / "latest.pt")["step"] == 2
    assert not [p.name for p in out.iterdir() if "partial" in p.name or "tmp" in p.name]


@pytest.mark.slow
def test_overfits_one_episode(tmp_path):
    """A real overfit: trained on one episode, its sampled chunks follow the recorded actions.

    600 steps of the tiny model (ResNet-10-T at 32 px, 1 layer × 64) take about a minute here;
    the loss falls from about 1.3 to below 0.3 and the sampled chunks' mean absolute error is
    well under half of the best constant prediction's (the episode's mean action).
    """
    store = build_store(tmp_path, episodes=1, step=0.2)
    s = settings(
        steps=600,
        batch_size=16,
        lr=2e-3,
        warmup_steps=20,
        val_ratio=0.0,
        checkpoint_every=600,
        log_every=25,
        policy={**TINY, "augment": False, "width": 64},
    )
    tr.train(store, tmp_path / "run", s)
    loss = pd.read_csv(tmp_path / "run" / "metrics.csv")["loss"]
    assert loss.iloc[0] > 0.8 and loss.tail(4).mean() < 0.3, loss.round(3).tolist()

    policy, _ = ck.load_policy(tmp_path / "run" / "model.pt")
    data = OverlayDataset(store, horizon=16, n_obs_steps=2, n_action_steps=15)
    batch = torch.utils.data.default_collate([data[i] for i in range(len(data))])
    predicted = policy.predict_action(batch, generator=torch.Generator().manual_seed(0))
    truth = batch["action"][:, 1:16]
    constant = truth.reshape(-1, truth.shape[-1]).mean(0)
    error = (predicted - truth).abs().mean().item()
    baseline = (constant - truth).abs().mean().item()
    assert error < 0.6 * baseline, f"sampled chunks {error:.4f} vs constant {baseline:.4f}"


@pytest.mark.skipif(
    torch.cuda.is_available(), reason="checks the message on a machine without CUDA"
)
def test_asking_for_cuda_without_it_says_so():
    assert resolve_device("auto").type == "cpu"
    with pytest.raises(RuntimeError, match="device 'cuda' asked for, but torch sees no CUDA"):
        resolve_device("cuda")
