"""Closed-loop rollouts: the simulator alone, and N rollouts batched against one after another.

    python bench/rollout.py [--rollouts 32] [--steps 60] [--quick]

Everything runs on one core (the process pinned to one CPU, torch with one thread), so the
figures do not depend on what else the machine runs on its other cores:

1. The simulator alone: `TableTopEnv` steps/s at 320×240 (head camera), the scripted expert
   acting, each step rendered (``get_obs`` after every ``take_action``, as a policy reads it),
   over several seeded scenes to their success.
2. N rollouts (scenes 100000 …, ``--steps`` actions each, the study's policy untrained, so
   that it runs anywhere without a training; it never succeeds, so every rollout runs its full length) through
   `overlayflow.policy.rollouts.run_rollouts`: batched (batch = N: the policy runs once per
   chunk on all of them) against one after another (batch = 1, RoboTwin's way), in the same
   run, with the same seeds (their actions are checked equal). Wall time, the time inside the
   policy's calls, and the ratio the issue sets a goal for: the batched run against the policy
   calls of a single rollout (goal ≤ 1.5×).
"""

from __future__ import annotations

import argparse
import logging
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from overlayflow.dataset.samples import OverlayDataset
from overlayflow.policy.checkpoint import Run, build_checkpoint, save_checkpoint
from overlayflow.policy.deploy import DeployedPolicy
from overlayflow.policy.model import ManiFlowPolicy
from overlayflow.policy.rollouts import run_rollouts
from overlayflow.settings import TrainSettings
from overlayflow.synthetic import Expert, TableTopEnv
from overlayflow.testing import overlay_settings, write_store

TASK = "place_block"
CAMERA = "head_camera"
WIDTH, HEIGHT = 320, 240
SIZE = (96, 96)  # the policy's images (overlay.size), as in config/study.yaml
FIRST = 100000
# The study's policy (config/study.yaml), untrained: 48² inputs (and coordinate channels) to a
# tiny ResNet, one observation step, the memory, 2 DiT-X blocks × 128, 10 Euler steps, 8 actions
# per chunk.
POLICY = {
    "image_channels": 3,
    "image_size": 48,
    "memory": "initial+current",
    "n_layers": 2,
    "width": 128,
    "heads": 4,
    "shared_encoder": True,
    "backbone": "resnet_tiny",
    "coords": True,
    "horizon": 16,
    "n_obs_steps": 1,
    "n_action_steps": 8,
}


def one_core() -> str:
    """Pin the process to its first allowed CPU and torch to one thread."""
    cpu = min(os.sched_getaffinity(0))
    os.sched_setaffinity(0, {cpu})
    torch.set_num_threads(1)
    return f"CPU {cpu}"


def simulator_rate(scenes: int) -> tuple[int, float]:
    """Steps and seconds of the expert acting in ``scenes`` scenes, every step rendered."""
    steps, seconds = 0, 0.0
    for index in range(FIRST, FIRST + scenes):
        env = TableTopEnv(TASK, index, cameras=(CAMERA,), width=WIDTH, height=HEIGHT)
        expert = Expert(env.step)
        env.get_obs()
        started = time.perf_counter()
        while not env.eval_success and env.take_action_cnt < env.step_lim:
            env.take_action(expert(env))
            env.get_obs()
            steps += 1
        seconds += time.perf_counter() - started
    return steps, seconds


def tiny_model(root: Path) -> Path:
    """An untrained tiny policy's ``model.pt``, normalized on a small synthetic store."""
    store = write_store(root, "rgb", SIZE, tasks=(TASK,), per_task=2, step=0.08)
    settings = TrainSettings.defaults(device="cpu", policy=POLICY)
    normalizer = OverlayDataset(
        store, horizon=1, n_obs_steps=1, n_action_steps=1
    ).action_normalizer()
    torch.manual_seed(0)
    policy = ManiFlowPolicy(settings.policy, normalizer).eval()
    run = Run(settings, str(store), {}, [TASK], {"train": [0], "val": []}, normalizer)
    model = root / "model.pt"
    save_checkpoint(build_checkpoint(run, 0, policy.state_dict()), model)
    return model


def rollouts(model: Path, n: int, steps: int, batch: int) -> dict:
    """Wall and policy seconds of ``n`` rollouts run ``batch`` at a time."""
    deployed = DeployedPolicy.load(
        model, layout="rgb", camera=CAMERA, overlay=overlay_settings(SIZE), task=TASK, device="cpu"
    )
    spent = [0.0]
    act = deployed.act

    def timed(episodes):
        started = time.perf_counter()
        actions = act(episodes)
        spent[0] += time.perf_counter() - started
        return actions

    deployed.act = timed

    def make_env(task: str, index: int) -> TableTopEnv:
        return TableTopEnv(
            task, index, cameras=(CAMERA,), width=WIDTH, height=HEIGHT, step_lim=steps
        )

    started = time.perf_counter()
    done = run_rollouts({TASK: deployed}, make_env, list(range(FIRST, FIRST + n)), batch)
    wall = time.perf_counter() - started
    return {"wall": wall, "policy": spent[0], "calls": done.calls, "done": done}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rollouts", type=int, default=32, help="N rollouts (default 32)")
    parser.add_argument("--steps", type=int, default=60, help="actions per rollout (default 60)")
    parser.add_argument("--scenes", type=int, default=10, help="expert scenes for the simulator")
    parser.add_argument("--quick", action="store_true", help="4 rollouts of 16 steps, 2 scenes")
    args = parser.parse_args(argv)
    if args.quick:
        args.rollouts, args.steps, args.scenes = 4, 16, 2
    logging.basicConfig(level=logging.WARNING)
    where = one_core()
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores ({where} used), "
        f"torch {torch.__version__} (1 thread)"
    )
    steps, seconds = simulator_rate(args.scenes)
    print(
        f"\nsimulator alone, {WIDTH}×{HEIGHT}, head camera, expert to success: {steps} steps in "
        f"{seconds:.2f} s = {steps / seconds:.0f} steps/s (goal ≥ 500)"
    )
    with tempfile.TemporaryDirectory(prefix="bench-rollout-") as tmp:
        model = tiny_model(Path(tmp))
        batched = rollouts(model, args.rollouts, args.steps, args.rollouts)
        alone = rollouts(model, args.rollouts, args.steps, 1)
    same = all(
        np.array_equal(a, b)
        for a, b in zip(batched["done"].actions, alone["done"].actions, strict=True)
    )
    single = alone["policy"] / args.rollouts  # a single rollout's policy calls
    n, k = args.rollouts, args.steps
    print(
        f"\n{n} rollouts × {k} steps, {WIDTH}×{HEIGHT} scenes, policy images {SIZE[0]}², "
        f"{POLICY['n_action_steps']} actions per chunk; same actions both ways: {same}\n"
    )
    print("| run | wall s | policy calls | policy s | rest s | wall / one rollout's policy s |")
    print("|---|---:|---:|---:|---:|---:|")
    for label, r in ((f"batched (batch {n})", batched), ("one after another", alone)):
        print(
            f"| {label} | {r['wall']:.2f} | {r['calls']} | {r['policy']:.2f} "
            f"| {r['wall'] - r['policy']:.2f} | {r['wall'] / single:.2f}× |"
        )
    print(
        f"\nbatched / one after another: {batched['wall'] / alone['wall']:.2f}× the wall time, "
        f"{batched['policy'] / alone['policy']:.2f}× the policy time; "
        f"batched policy time / one rollout's: {batched['policy'] / single:.2f}× (goal: the "
        f"batched run ≤ 1.5× one rollout's policy calls)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
