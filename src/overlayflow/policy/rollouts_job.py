"""The ``sim_rollouts`` job: an experiment's rollouts on the synthetic table-top, written out.

``sim.episodes`` rollouts per task, on scenes ``sim.first_index`` … (drawn with
``synthetic.seed``, the training episodes being scenes 0 … N−1), ``sim.batch`` at a time
(`overlayflow.policy.rollouts`). A launched path source is started once for the job (its
``servers_per_shard`` servers, logs in the job's server log folder) and stopped at its end, on
an error or on SIGTERM; a kill -9 takes it along (parent-death signal). Outputs, each written
atomically:

- ``results/sim/synthetic/{experiment}.json``: success ± 95 % Wilson interval overall, per task
  and split by occlusion (`overlayflow.policy.rollouts_stats`), mean episode length, and how
  the rollouts were run;
- ``….csv``: one row per rollout;
- ``…/rollout{i}.gif``: ``previews.episodes`` rollouts (the first scene of each task, then the
  second, …), the scene's head camera beside what the policy was given (its current image: the
  overlay, or RGB and path image side by side).
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Sequence
from functools import partial
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from overlayflow import files
from overlayflow.overlays.previews import viewable, write_animation
from overlayflow.policy.deploy import DeployedPolicy
from overlayflow.policy.online import path_servers, server_log
from overlayflow.policy.rollouts import BatchPaths, MakeEnv, Progress, animated, run_rollouts
from overlayflow.policy.rollouts_stats import OCCLUSION_RULE, episodes_table, summarize
from overlayflow.settings import (
    OverlaySettings,
    PreviewsSettings,
    SimSettings,
    SyntheticSettings,
    VLMSource,
)
from overlayflow.synthetic import TableTopEnv

log = logging.getLogger(__name__)

GAP = 2  # black pixels between the scene and the policy's view in an animation


def rollouts_job(
    experiment: str,
    model: str | Path,
    *,
    layout: str,
    camera: str,
    tasks: Sequence[str],
    sim: SimSettings,
    synthetic: SyntheticSettings,
    overlay: OverlaySettings,
    previews: PreviewsSettings,
    source: VLMSource | None,
    log_dir: Path,
    output: Path,
    table: Path,
    animations: Sequence[Path] = (),
    device: str = "auto",
) -> dict[str, Any]:
    """Run and write ``experiment``'s rollouts (see the module); ``animations``: the GIFs to
    write (`overlayflow.policy.rollouts.animated` says which rollouts they show)."""
    started = time.monotonic()
    indexes = list(range(sim.first_index, sim.first_index + sim.episodes))
    animate = animated(tasks, indexes, len(animations))

    make_env = env_maker(synthetic, sim, camera)
    with contextlib.ExitStack() as stack:
        paths = _paths(source, log_dir, stack)
        load = partial(DeployedPolicy.load, model, layout=layout, camera=camera, overlay=overlay)
        policies = {task: load(task=task, paths=paths, device=device) for task in tasks}
        progress = Progress(f"rollouts of {experiment}", len(indexes) * len(tasks))
        done = run_rollouts(policies, make_env, indexes, sim.batch, paths, animate, progress)
        requests = paths.requests if paths is not None else 0
    progress.report()
    for rollout, gif in zip(animate, animations, strict=True):
        write_rollout_animation(done.frames[rollout], gif, previews)
    with files.atomic_output(table) as tmp:
        episodes_table(experiment, done.results).to_csv(tmp, index=False)
    result = {
        "experiment": experiment,
        "simulator": "synthetic",
        "path_source": None if source is None else source.name,
        "layout": layout,
        "tasks": list(tasks),
        **summarize(done.results),
        "confidence": 0.95,
        "occluded_rule": OCCLUSION_RULE,
        "scenes": {
            "seed": synthetic.seed,
            "first_index": sim.first_index,
            "last_index": indexes[-1],
            "why": "test scenes: the training episodes are scenes 0 .. N-1 of the same seed",
        },
        "step_lim": sim.step_lim,
        "batch": sim.batch,
        "policy_calls": done.calls,
        "path_requests": requests,
        "animations": [str(path) for path in animations],
        "seconds": round(time.monotonic() - started, 1),
        "episodes": done.results,
    }
    files.write_json(output, result, indent=1)
    log.info(
        "%s: %d of %d rollouts succeeded (95 %% interval %s), mean length %.1f steps",
        *(experiment, result["successes"], result["trials"], result["interval"]),
        result["mean_steps"],
    )
    return result


def env_maker(synthetic: SyntheticSettings, sim: SimSettings, camera: str) -> MakeEnv:
    """The rollouts' environments: the episode writer's scenes, image size and step."""

    def make_env(task: str, index: int) -> TableTopEnv:
        return TableTopEnv(
            task,
            index,
            seed=synthetic.seed,
            cameras=(camera,),
            width=synthetic.width,
            height=synthetic.height,
            step=synthetic.step,
            step_lim=sim.step_lim,
            tolerance=sim.tolerance,
        )

    return make_env


def _paths(
    source: VLMSource | None, log_dir: Path, stack: contextlib.ExitStack
) -> BatchPaths | None:
    """The source's servers for the whole job (launched ones stopped when ``stack`` closes)."""
    if source is None:
        return None
    servers = 1 if source.urls else source.servers_per_shard
    urls = path_servers(source, log_dir, stack, servers=servers)
    if source.urls:
        hint = "Check that it runs (paths.sources.<name>.urls). "
    else:
        logs = ", ".join(str(server_log(source, log_dir, j, servers)) for j in range(servers))
        hint = f"It was launched by this job; its log: {logs}. "
    paths = BatchPaths(source, urls, hint)
    stack.callback(paths.close)
    log.info("paths asked online from %s at %s", source.name, ", ".join(urls))
    return paths


def write_rollout_animation(
    frames: Sequence[tuple[np.ndarray, np.ndarray]], out: Path, previews: PreviewsSettings
) -> None:
    """A GIF of one rollout: each step's head-camera frame (H, W, 3), scaled to the height of
    what the policy was given (C, h, w), beside it."""
    pictures = []
    for scene, seen in frames:
        view = viewable(seen[None])[0]
        h = view.shape[1]
        w = max(1, round(scene.shape[1] * h / scene.shape[0]))
        left = cv2.resize(scene, (w, h), interpolation=cv2.INTER_AREA).transpose(2, 0, 1)
        gap = np.zeros((3, h, GAP), np.uint8)
        pictures.append(np.concatenate([left, gap, view], axis=2))
    write_animation(np.stack(pictures), out, fps=previews.fps, max_frames=previews.max_frames)
