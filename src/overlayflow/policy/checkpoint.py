"""Checkpoints: one format for the training state and the finished model, written atomically.

A checkpoint is a plain dict of tensors and plain data, read with ``torch.load(weights_only=True)``::

    format, format_version  "overlayflow.checkpoint", FORMAT_VERSION
    step                    optimizer steps done
    settings                `TrainSettings.to_dict()`: the run's training and policy settings
    store, provenance       the dataset store trained on, and what the workflow recorded
    tasks                   the store's task names (task id = position)
    split                   {"train": [...], "val": [...]}: episode indices in the store
    normalizer              `LimitsNormalizer.state_dict()` of the training episodes' actions
    model                   weights: the trained ones (latest.pt, best.pt) or the EMA (model.pt)

and, in the training state only (latest.pt, best.pt)::

    ema                     EMA weights (their decay is a function of ``step``)
    optimizer               its state dict (the learning rate is a function of ``step``)
    rng                     {"torch": CPU RNG state, "cuda": [one state per device]}
    best_val                the lowest validation loss so far
    wandb_id                the run's W&B run id, continued on resume (absent before it was kept)
"""

from __future__ import annotations

import errno
import logging
import os
import shutil
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from overlayflow import files
from overlayflow.dataset.normalizer import LimitsNormalizer
from overlayflow.policy.encoders import state_mismatch
from overlayflow.policy.model import EMA, ManiFlowPolicy
from overlayflow.settings import PolicyConfig, TrainSettings

log = logging.getLogger(__name__)

FORMAT = "overlayflow.checkpoint"
# 2: `settings` holds the complete policy settings; no separate `policy_config` or `resolved`.
# 3: `ema` is the EMA weights (timm's ModelEmaV3 keeps no step of its own); no `scheduler`.
FORMAT_VERSION = 3
# Policy settings added after format 3, and what a checkpoint without them was trained with.
ADDED_POLICY_SETTINGS = {"coords": False, "image_action_weight": 0.0}


class CheckpointError(Exception):
    """A checkpoint that cannot be used here; the message says why and what to do."""


@dataclass(frozen=True)
class Run:
    """What every checkpoint of a training run records besides its weights: fixed for the run."""

    settings: TrainSettings
    store: str
    provenance: Mapping[str, Any]
    tasks: list[str]
    split: Mapping[str, list[int]]
    normalizer: LimitsNormalizer

    def fixed(self) -> dict[str, Any]:
        """What a checkpoint must share with this run to resume it."""
        return _fixed(self.settings.to_dict(), self.store)


def _fixed(settings: Mapping[str, Any], store: str) -> dict[str, Any]:
    """The settings that may not change between a run and its resumption, and the store."""
    kept = {k: v for k, v in settings.items() if k not in TrainSettings.RESUMABLE}
    return {"settings": kept, "store": store}


def build_checkpoint(
    run: Run,
    step: int,
    model: Mapping[str, torch.Tensor],
    training: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The checkpoint of ``run`` at ``step`` (format in the module doc): with the ``training``
    state of `training_state` for latest.pt and best.pt, without it for model.pt."""
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "step": step,
        "settings": run.settings.to_dict(),
        "store": run.store,
        "provenance": dict(run.provenance),
        "tasks": list(run.tasks),
        "split": {part: list(episodes) for part, episodes in run.split.items()},
        "normalizer": run.normalizer.state_dict(),
        "model": model,
        **(training or {}),
    }


def training_state(
    ema: EMA, optimizer: torch.optim.Optimizer, best_val: float, wandb_id: str
) -> dict[str, Any]:
    """Everything besides the weights that a resumed run needs to continue exactly."""
    return {
        "ema": ema.module.state_dict(),
        "optimizer": optimizer.state_dict(),
        "rng": {
            "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else [],
        },
        "best_val": best_val,
        "wandb_id": wandb_id,
    }


def resume(
    path: Path,
    run: Run,
    policy: ManiFlowPolicy,
    ema: EMA,
    optimizer: torch.optim.Optimizer,
) -> tuple[int, float, str | None]:
    """Restore the training state of ``path`` if it was written for the same run: (step, best
    validation loss, W&B run id or None). A checkpoint of other settings, or one past the run's
    ``steps`` (a shorter training is another training, not a finished one), is set aside as
    ``latest.stale.pt``."""
    ckpt = load_checkpoint(path)
    why = None
    if _fixed(ckpt["settings"], ckpt["store"]) != run.fixed():
        why = "was written with other settings"
    elif ckpt["step"] > run.settings.steps:
        why = f"is at step {ckpt['step']}, past this run's {run.settings.steps} steps"
    elif (mismatch := state_mismatch(ckpt["model"], policy.state_dict())) is not None:
        why = f"holds another network's weights ({mismatch}): another version of overlayflow"
    if why is not None:
        stale = path.with_name("latest.stale.pt")
        os.replace(path, stale)
        log.warning("%s %s; starting afresh (it is kept as %s)", path, why, stale)
        return 0, float("inf"), None
    policy.load_state_dict(ckpt["model"])
    ema.module.load_state_dict(ckpt["ema"])
    optimizer.load_state_dict(ckpt["optimizer"])
    torch.set_rng_state(ckpt["rng"]["torch"])
    if ckpt["rng"]["cuda"]:
        torch.cuda.set_rng_state_all(ckpt["rng"]["cuda"])
    log.info("resuming from %s at step %d", path, ckpt["step"])
    return int(ckpt["step"]), float(ckpt["best_val"]), ckpt.get("wandb_id")


def save_checkpoint(checkpoint: Mapping[str, Any], path: str | Path) -> None:
    """Write ``checkpoint`` to ``path`` atomically (a full disk: see `_replace`)."""

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as f:
            torch.save(dict(checkpoint), f)
            f.flush()
            os.fsync(f.fileno())

    _replace(Path(path), write)


def link_checkpoint(source: Path, path: Path) -> None:
    """``path`` becomes the file ``source`` is (a hard link; a copy where links are not allowed):
    the same checkpoint twice costs no space, and replacing ``source`` later leaves ``path``."""

    def link(tmp: Path) -> None:
        try:
            os.link(source, tmp)
        except OSError:
            shutil.copyfile(source, tmp)

    _replace(path, link)


def _replace(path: Path, write: Callable[[Path], None]) -> None:
    """``write`` the temporary file that replaces ``path`` when complete. On a full disk the
    error names the folder and says that the previous checkpoint at ``path`` is left as it was."""
    previous = path.exists()
    try:
        with files.atomic_output(path) as tmp:
            write(tmp)
    except OSError as err:
        if err.errno != errno.ENOSPC:
            raise
        kept = (
            f"the previous checkpoint {path.name} is intact"
            if previous
            else f"there was no previous {path.name}"
        )
        raise OSError(errno.ENOSPC, f"{err.strerror}; {kept}") from err


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load a checkpoint written here (tensors and plain data only), checking its format version."""
    path = Path(path)
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise
    except Exception as err:
        raise CheckpointError(f"{path}: not a readable checkpoint ({err}); delete it") from err
    found = (ckpt.get("format"), ckpt.get("format_version")) if isinstance(ckpt, dict) else None
    if found != (FORMAT, FORMAT_VERSION):
        raise CheckpointError(
            f"{path}: checkpoint format {found!r}, this code reads {(FORMAT, FORMAT_VERSION)}; "
            "delete it and train again with this version of overlayflow, or use the version that "
            "wrote it"
        )
    # Settings added since format 3 was written: their defaults are what those checkpoints did.
    policy = ckpt.get("settings", {}).get("policy")
    if isinstance(policy, dict):
        for key, value in ADDED_POLICY_SETTINGS.items():
            policy.setdefault(key, value)
    return ckpt


def load_policy(
    path: str | Path, device: str | torch.device = "cpu"
) -> tuple[ManiFlowPolicy, dict[str, Any]]:
    """The EMA policy of ``model.pt`` (or of a training checkpoint), in eval mode, and its record."""
    ckpt = load_checkpoint(path)
    cfg = PolicyConfig.from_dict(ckpt["settings"]["policy"])
    normalizer = LimitsNormalizer.from_state_dict(ckpt["normalizer"])
    # The checkpoint holds every weight, so a configured weights file is not read again.
    policy = ManiFlowPolicy(cfg, normalizer, load_weights=False)
    # model.pt holds the EMA weights as "model"; a training checkpoint holds them in "ema".
    weights = ckpt["ema"] if "ema" in ckpt else ckpt["model"]
    if (mismatch := state_mismatch(weights, policy.state_dict())) is not None:
        raise CheckpointError(
            f"{path}: its weights do not fit the network its settings describe in this version "
            f"of overlayflow ({mismatch}); it was written by another version. Use that version, "
            "or train it again with this one."
        )
    policy.load_state_dict(weights)
    return policy.to_device(device).eval(), ckpt
