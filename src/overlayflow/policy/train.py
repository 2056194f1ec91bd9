"""Training: one linear loop from a dataset store to resumable checkpoints.

``train(store, out_dir, settings)`` trains a `ManiFlowPolicy` and writes into ``out_dir``
(checkpoint format in `overlayflow.policy.checkpoint`):

``latest.pt``
    The whole training state, rewritten atomically every ``checkpoint_every`` steps, at the end,
    and when SIGTERM or SIGUSR1 (SLURM's signal before a time limit, or preemption) or SIGINT
    (Ctrl-C) arrives. A new run in the same directory resumes from it, and continues its W&B run.
``best.pt``
    The same, at the step with the lowest validation loss so far.
``model.pt``
    The finished model for evaluation: EMA weights, normalizer, settings, the episode split.
``metrics.jsonl``, ``metrics.csv``
    One row per logged step (train loss parts, lr, grad norm, data-wait fraction) and per
    validation.

A progress line is logged every ``log_every`` steps and also whenever `LOG_SECONDS` passed
without one, so a slow start shows progress within the first minute; only the ``log_every`` steps
write metric rows.

Resuming gives the same weights as an uninterrupted run: batches come from a sampler whose order
is a function of (seed, epoch) and which starts at the saved step, the learning rate and the EMA
decay are functions of the step, and the torch RNG state (noise, flow times, augmentation,
dropout) is saved and restored.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import math
import os
import signal
import time
import uuid
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from timm.scheduler import CosineLRScheduler

from overlayflow.dataset.indices import split_episodes
from overlayflow.dataset.loader import make_loader
from overlayflow.dataset.samples import OverlayDataset, hold_images
from overlayflow.dataset.store import open_store
from overlayflow.interrupts import INTERRUPT_SIGNALS, take_early
from overlayflow.policy.checkpoint import (
    Run,
    build_checkpoint,
    link_checkpoint,
    resume,
    save_checkpoint,
    training_state,
)
from overlayflow.policy.model import EMA, ManiFlowPolicy, autocast, count_parameters, resolve_device
from overlayflow.settings import TrainSettings

log = logging.getLogger(__name__)

# The longest wall time between progress lines, whatever ``log_every`` is.
LOG_SECONDS = 30.0


class Interrupted(Exception):
    """Training stopped on a signal after writing ``latest.pt``; run again to resume."""


def lr_schedule(optimizer: torch.optim.Optimizer, warmup: int, total: int) -> CosineLRScheduler:
    """Linear warm-up from 0 over ``warmup`` steps, then cosine decay to 0 at ``total`` (0 after
    it). timm's schedulers are functions of the step: ``step_update(step)`` sets the learning rate
    of the step to come, so a resumed run needs no scheduler state."""
    return CosineLRScheduler(
        optimizer,
        t_initial=max(1, total - warmup),
        warmup_t=warmup,
        warmup_prefix=True,
        t_in_epochs=False,
    )


@contextlib.contextmanager
def _stop_on_signals() -> Iterator[dict[str, int | None]]:
    """Record SIGTERM / SIGUSR1 / SIGINT instead of dying, so the loop can checkpoint first.

    A second Ctrl-C raises `KeyboardInterrupt` at once, for whoever cannot wait for the step.
    Forked DataLoader workers inherit the handler and ignore the signal: Ctrl-C reaches the
    terminal's whole process group, and the main process stops the workers itself.
    """
    received: dict[str, int | None] = {"signal": take_early()}
    if received["signal"] is not None:
        log.warning(
            "received %s while starting: checkpointing after the first step",
            signal.Signals(received["signal"]).name,
        )
    owner = os.getpid()

    def handler(signum, _frame):
        if os.getpid() != owner:
            return
        if signum == signal.SIGINT and received["signal"] is not None:
            raise KeyboardInterrupt
        received["signal"] = signum
        log.warning(
            "received %s: checkpointing at the end of this step", signal.Signals(signum).name
        )

    previous = {sig: signal.signal(sig, handler) for sig in INTERRUPT_SIGNALS}
    try:
        yield received
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


class _Metrics:
    """metrics.jsonl appended and flushed per row; metrics.csv written from it with pandas."""

    def __init__(self, out_dir: Path, resume_step: int, wandb_run: Any = None) -> None:
        self.jsonl = out_dir / "metrics.jsonl"
        self.csv = out_dir / "metrics.csv"
        kept = []
        if resume_step and self.jsonl.exists():
            # Rows past the resumed step were logged after the last checkpoint: they are redone.
            for line in self.jsonl.read_text().splitlines():
                with contextlib.suppress(json.JSONDecodeError):
                    row = json.loads(line)
                    if row["step"] <= resume_step:
                        kept.append(line + "\n")
        self.jsonl.write_text("".join(kept))
        self.wandb_run = wandb_run

    def write(self, row: Mapping[str, Any]) -> None:
        with open(self.jsonl, "a") as f:
            f.write(json.dumps(row) + "\n")
        if self.wandb_run is not None:
            self.wandb_run.log(dict(row), step=row["step"])

    def close(self) -> None:
        import pandas as pd

        rows = [json.loads(line) for line in self.jsonl.read_text().splitlines() if line]
        pd.DataFrame(rows).to_csv(self.csv, index=False)


def _wandb(settings: TrainSettings, out_dir: Path, config: Mapping[str, Any], run_id: str) -> Any:
    """The W&B run ``run_id`` (kept in the checkpoint, so a resumed training continues it)."""
    if not settings.wandb:
        return None
    try:
        import wandb
    except ImportError as err:
        raise RuntimeError(
            "train.wandb is on, but wandb is not installed: pip install wandb"
        ) from err
    return wandb.init(
        dir=str(out_dir), name=out_dir.name, config=dict(config), id=run_id, resume="allow"
    )


class _Clock:
    """Where the loop's time goes: waiting for batches, and whole steps."""

    def __init__(self, first_step: int) -> None:
        self.first_step = first_step
        self.started = self.saved = self.logged = time.monotonic()
        self.wait = self.busy = 0.0
        self.timed_from = self.last = 0.0

    def step(self, step: int, started: float, loaded: float) -> None:
        """Step ``step`` began at ``started`` and had its batch at ``loaded``."""
        self.last = time.monotonic()
        if step == self.first_step + 1:
            # Throughput excludes the first step (worker start-up, lazy initialisation).
            self.timed_from = self.last
        self.wait += loaded - started
        self.busy += self.last - started

    @property
    def data_wait(self) -> float:
        """The fraction of the loop spent waiting for the next batch."""
        return self.wait / max(self.busy, 1e-9)

    def steps_per_s(self, step: int) -> float:
        return (step - self.first_step) / max(time.monotonic() - self.started, 1e-9)

    def samples_per_s(self, step: int, batch_size: int) -> float | None:
        timed = step - self.first_step - 1
        return timed * batch_size / (self.last - self.timed_from) if timed > 0 else None


def _log_progress(step: int, total: int, row: Mapping[str, Any], clock: _Clock) -> None:
    rate = clock.steps_per_s(step)
    log.info(
        "step %d/%d loss %.4f lr %.2e %.2f steps/s data-wait %.0f%% ETA %.0f s",
        step,
        total,
        row["loss"],
        row["lr"],
        rate,
        100 * row["data_wait"],
        (total - step) / max(rate, 1e-9),
    )
    clock.logged = time.monotonic()


def _validation_message(step: int, val: float, best_val: float) -> str:
    """The log line of a validation: whether it is a new best, or the best so far."""
    if val < best_val:
        was = f", previous {best_val:.4f}" if math.isfinite(best_val) else ""
        return f"step {step}: validation loss {val:.4f} (new best{was})"
    return f"step {step}: validation loss {val:.4f} (best so far {best_val:.4f})"


def _progress(
    step: int,
    loss_parts: Mapping[str, torch.Tensor],
    grad_norm: torch.Tensor,
    lr: float,
    clock: _Clock,
) -> dict[str, Any]:
    """A metrics row: the loss parts and the gradient norm read from the device in one go."""
    named = {"loss": loss_parts["loss"], **loss_parts, "grad_norm": grad_norm}
    values = torch.stack([v.float() for v in named.values()]).tolist()
    return {
        "step": step,
        **dict(zip(named, values, strict=True)),
        "lr": lr,
        "data_wait": clock.data_wait,
    }


@torch.no_grad()
def validation_loss(policy: ManiFlowPolicy, loader, device: torch.device, batches: int) -> float:
    """Mean loss of ``policy`` over the first ``batches`` batches of ``loader`` (seeded noise)."""
    state = torch.get_rng_state()
    torch.manual_seed(0)
    was_training = policy.training
    policy.eval()
    losses = []
    try:
        for i, batch in enumerate(loader):
            if i == batches:
                break
            with autocast(device):
                loss, _ = policy.compute_loss(batch)
            losses.append(loss.detach().float())
    finally:
        policy.train(was_training)
        torch.set_rng_state(state)
    return float(np.mean(torch.stack(losses).tolist())) if losses else float("nan")


def _prepare(
    store: str | Path, settings: TrainSettings, provenance: Mapping[str, Any] | None
) -> tuple[Run, OverlayDataset, OverlayDataset | None]:
    """The run's record and its training and validation samples."""
    root = open_store(store)
    attrs = dict(root.attrs)
    # The state and action lengths are the data's (14 for aloha-agilex, 16 for 7-joint arms).
    dims = {"state_dim": root["data/state"].shape[1], "action_dim": root["data/action"].shape[1]}
    settings = dataclasses.replace(
        settings,
        policy=dataclasses.replace(settings.policy, **{k: int(v) for k, v in dims.items()}),
    )
    found = {"image_channels": attrs["channels"], "n_tasks": len(attrs["tasks"])}
    expected = {name: getattr(settings.policy, name) for name in found}
    if found != expected:
        raise ValueError(
            f"{store} does not fit the policy settings: the store has {found['image_channels']} "
            f"image channels and {found['n_tasks']} tasks, the settings say image_channels="
            f"{expected['image_channels']} and n_tasks={expected['n_tasks']}; train on the "
            "experiment's own dataset, or rebuild it"
        )
    train_eps, val_eps = split_episodes(
        len(attrs["episodes"]), settings.val_ratio, settings.seed, root["meta/task_id"][:]
    )
    train_set = OverlayDataset.for_policy(store, settings.policy, train_eps)
    val_set = OverlayDataset.for_policy(store, settings.policy, val_eps) if len(val_eps) else None
    log.info("%s: %s", store, hold_images([train_set, val_set], settings.images_in_memory_gb))
    run = Run(
        settings=settings,
        store=str(store),
        provenance=dict(provenance or {}),
        tasks=list(attrs["tasks"]),
        split={"train": train_eps.tolist(), "val": val_eps.tolist()},
        normalizer=train_set.action_normalizer(),
    )
    return run, train_set, val_set


def _optimizer(
    policy: ManiFlowPolicy, settings: TrainSettings
) -> tuple[torch.optim.Optimizer, CosineLRScheduler]:
    """AdamW (no decay on norms, biases, embeddings) with warm-up and cosine decay."""
    optimizer = torch.optim.AdamW(
        policy.optim_groups(settings.weight_decay), lr=settings.lr, betas=settings.betas
    )
    return optimizer, lr_schedule(optimizer, settings.warmup_steps, settings.steps)


def train(
    store: str | Path,
    out_dir: str | Path,
    settings: TrainSettings,
    provenance: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Train on ``store`` into ``out_dir`` (files in the module docstring); returns a summary.

    Resumes from ``out_dir/latest.pt`` when it was written with the same settings (those in
    `TrainSettings.RESUMABLE` may differ, so ``steps`` can be raised). Raises `Interrupted` after
    checkpointing when SIGTERM, SIGUSR1 or SIGINT arrives.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    device = resolve_device(settings.device)
    torch.manual_seed(settings.seed)
    run, train_set, val_set = _prepare(store, settings, provenance)
    settings = run.settings  # with the data's state and action lengths

    policy = ManiFlowPolicy(settings.policy, run.normalizer)
    ema = EMA(policy)  # its transformer is the consistency teacher
    policy.to_device(device)
    ema.module.to_device(device)
    optimizer, scheduler = _optimizer(policy, settings)
    latest, best = out_dir / "latest.pt", out_dir / "best.pt"
    step, best_val, wandb_id = 0, float("inf"), None
    if latest.exists():
        step, best_val, wandb_id = resume(latest, run, policy, ema, optimizer)
    scheduler.step_update(step)  # `steps` may have been raised since the checkpoint
    # From the OS, not an RNG the checkpoint restores: resuming stays exact.
    wandb_id = wandb_id or uuid.uuid4().hex[:16]

    def save(path: Path) -> None:
        training = training_state(ema, optimizer, best_val, wandb_id)
        save_checkpoint(build_checkpoint(run, step, policy.state_dict(), training), path)

    loader = make_loader(
        train_set,
        settings.batch_size,
        num_workers=settings.num_workers,
        seed=settings.seed,
        start_step=step,
        pin_memory=device.type == "cuda",
    )
    val_loader = None
    if val_set is not None:
        val_loader = make_loader(
            val_set, settings.batch_size, num_workers=min(settings.num_workers, 2)
        )
    log.info(
        "training %s on %s: %d train / %d val samples (%s episodes), %.1f M parameters, "
        "steps %d → %d, batch %d",
        out_dir.name,
        device,
        len(train_set),
        len(val_set) if val_set else 0,
        " / ".join(str(len(episodes)) for episodes in run.split.values()),
        count_parameters(policy) / 1e6,
        step,
        settings.steps,
        settings.batch_size,
    )
    wandb_run = _wandb(settings, out_dir, run.settings.to_dict(), wandb_id)
    metrics = _Metrics(out_dir, step, wandb_run)
    policy.train()
    clock = _Clock(step)
    # The handlers come first: the workers ignore the signals (`dataset.loader.init_worker`), and
    # one that arrives while they start is still seen.
    with _stop_on_signals() as received:
        batches = iter(loader)
        try:
            while step < settings.steps:
                started = time.monotonic()
                batch = next(batches)
                loaded = time.monotonic()
                with autocast(device):
                    loss, parts = policy.compute_loss(batch)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                grad_norm = torch.nn.utils.clip_grad_norm_(policy.parameters(), settings.grad_clip)
                optimizer.step()
                ema.update(policy, step)
                step += 1
                scheduler.step_update(step)
                clock.step(step, started, loaded)
                row: dict[str, Any] = {}
                on_steps = step % settings.log_every == 0 or step == settings.steps
                if on_steps or time.monotonic() - clock.logged >= LOG_SECONDS:
                    lr = optimizer.param_groups[0]["lr"]
                    progress = _progress(step, parts, grad_norm, lr, clock)
                    _log_progress(step, settings.steps, progress, clock)
                    if on_steps:  # metric rows stay on the steps, whatever the wall time
                        row = progress
                is_best = False
                if val_loader is not None and (
                    step % settings.val_every == 0 or step == settings.steps
                ):
                    val = validation_loss(policy, val_loader, device, settings.val_batches)
                    row = {**row, "step": step, "val_loss": val}
                    log.info("%s", _validation_message(step, val, best_val))
                    is_best = val < best_val  # False for NaN: best_val stays finite
                    if is_best:
                        best_val = val
                if row:
                    metrics.write(row)
                stopping = received["signal"] is not None
                saved = (
                    stopping
                    or step % settings.checkpoint_every == 0
                    or step == settings.steps
                    # A safety net where no signal comes before the job is killed.
                    or time.monotonic() - clock.saved >= 60 * settings.checkpoint_minutes
                )
                if saved:
                    save(latest)
                    clock.saved = time.monotonic()
                if is_best and saved:
                    # best.pt is then a link to latest.pt, which later saves replace.
                    link_checkpoint(latest, best)
                elif is_best:
                    save(best)
                if stopping:
                    metrics.close()
                    name = signal.Signals(received["signal"]).name
                    raise Interrupted(
                        f"{name} at step {step}/{settings.steps}: {latest} written; run the same "
                        "command (or rerun the workflow) to resume from it"
                    )
        finally:
            # Stop the workers here: they ignore the signals, so the exit of the interpreter, which
            # terminates leftover workers with it, could not.
            del batches
    metrics.close()
    if not best.exists():  # no validation: the last step is the best known
        if latest.exists():
            link_checkpoint(latest, best)
        else:
            save(best)
    save_checkpoint(build_checkpoint(run, step, ema.module.state_dict()), out_dir / "model.pt")
    summary = {
        "steps": step,
        "samples_per_s": clock.samples_per_s(step, settings.batch_size),
        "best_val_loss": best_val if math.isfinite(best_val) else None,
        "parameters": count_parameters(policy),
        "data_wait": clock.data_wait,
    }
    log.info("done: %s", summary)
    return summary
