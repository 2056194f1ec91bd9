"""Logging for workflow scripts and the command line: plain flushed lines, readable without a TTY."""

from __future__ import annotations

import logging
import os
import socket
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def configure(log_path: str | Path | None = None, level: int = logging.INFO) -> None:
    """Send log records to stderr and, when given, to ``log_path``; every record is flushed."""
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if log_path is not None:
        Path(log_path).parent.mkdir(parents=True, exist_ok=True)
        handlers.append(logging.FileHandler(log_path, mode="w"))
    logging.basicConfig(level=level, format=FORMAT, handlers=handlers, force=True)


def job_environment() -> str:
    """Where a job runs: SLURM job id and partition, the GPUs it was given, the host."""
    keys = ("SLURM_JOB_ID", "SLURM_JOB_PARTITION", "CUDA_VISIBLE_DEVICES")
    pairs = [f"{key}={os.environ.get(key, '')}" for key in keys]
    return " ".join([*pairs, f"host={socket.gethostname()}"])


@contextmanager
def script_log(log_path: str | Path) -> Iterator[logging.Logger]:
    """Context of a workflow script: log to its ``log:`` file; an error is logged there, then re-raised.

    The job log then ends with the one-line reason, which is what a user opens first.
    """
    configure(log_path)
    logger = logging.getLogger("overlayflow.job")
    logger.info("environment: %s", job_environment())
    try:
        yield logger
    except Exception as err:
        logger.error("%s: %s", type(err).__name__, err)
        raise
