"""Rollouts on the synthetic table-top: B seeded episodes stepped together through a deployed policy.

Each rollout is one scene of `overlayflow.synthetic.TableTopEnv` (task, scene index) acted on by
the experiment's `DeployedPolicy` exactly as RoboTwin's loop does it one trial at a time
(`overlayflow.policy.robotwin`): observe the first frame; then, until success or the step limit,
sample a chunk and execute its ``n_action_steps`` actions, reading ``get_obs()`` and observing
after each one. `run_batch` does that for B rollouts at once:

- the policy runs once per chunk on every rollout still going (`DeployedPolicy.act`), each
  rollout drawing its own noise (seeded by its task and scene, `noise_seed`), so that a rollout
  acts the same alone or in any batch: the batch is an optimisation, not another experiment;
- after each action, the frames whose path is due (the source's cadence) are asked together,
  concurrently over the source's servers (`BatchPaths`, one worker thread per server, as the path
  stage asks), then every rollout observes its frame;
- a rollout that succeeds or reaches its step limit drops out of the batch.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
import zlib
from collections.abc import Callable, Collection, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from overlayflow.paths import vlm
from overlayflow.paths.asking import ServerFailing
from overlayflow.paths.records import GOOD
from overlayflow.policy.deploy import DeployedPolicy, Episode, camera_frame
from overlayflow.policy.online import OnlinePaths
from overlayflow.policy.rollouts_stats import hidden_steps
from overlayflow.settings import VLMSource
from overlayflow.synthetic import TableTopEnv

log = logging.getLogger(__name__)

HEAD = "head_camera"  # the scene's camera in the animations, and the one visibility is seen by
PROGRESS_SECONDS = 30.0

# (task, scene index) → the environment of that rollout
MakeEnv = Callable[[str, int], TableTopEnv]


class RolloutError(RuntimeError):
    """Rollouts that cannot go on (a path server that stopped answering); says what to do."""


def noise_seed(task: str, index: int) -> int:
    """The seed of a rollout's sampling noise: its task and scene, nothing else."""
    return zlib.crc32(f"{task}/{index}".encode())


# --- the path source, asked for many frames at once --------------------------------------------


class BatchPaths:
    """The experiment's VLM source asked online over its servers: the due frames of a batch go
    out together, one worker thread per server taking them one at a time (as a server serves
    them), each server with its own client (`OnlinePaths`: parsing, hold rule, 5xx count).

    A server that is down, refuses, or keeps failing raises `RolloutError` naming it and
    ``hint`` (where its log is, what to check)."""

    def __init__(self, source: VLMSource, urls: Sequence[str], hint: str = "") -> None:
        if not urls:
            raise ValueError("BatchPaths needs at least one server URL. Got none.")
        self.source, self.every, self.hint = source, source.every, hint
        self.clients = [OnlinePaths(source, url) for url in urls]
        self.pool = ThreadPoolExecutor(len(self.clients), thread_name_prefix="paths")
        self.requests = 0

    def answer(self, step: int, frame: np.ndarray, instruction: str, label: str) -> dict[str, Any]:
        """One frame's answer record (the `PathSource` protocol)."""
        return self.answer_all([(step, frame, instruction, label)])[0]

    def answer_all(self, asks: Sequence[tuple[int, np.ndarray, str, str]]) -> list[dict[str, Any]]:
        """The answer records of ``asks`` (step, frame, instruction, label), in their order."""
        todo: queue.SimpleQueue[int] = queue.SimpleQueue()
        for i in range(len(asks)):
            todo.put(i)
        records: list[Any] = [None] * len(asks)
        stop = threading.Event()

        def work(client: OnlinePaths) -> None:
            while not stop.is_set():
                try:
                    i = todo.get_nowait()
                except queue.Empty:
                    return
                try:
                    records[i] = self._ask(client, *asks[i])
                except BaseException:
                    stop.set()
                    raise

        futures = [self.pool.submit(work, client) for client in self.clients[: len(asks)]]
        for future in futures:
            future.result()
        self.requests += len(asks)
        return records

    def _ask(
        self, client: OnlinePaths, step: int, frame: np.ndarray, instruction: str, label: str
    ) -> dict[str, Any]:
        try:
            return client.answer(step, frame, instruction, label)
        except (vlm.ServerError, ServerFailing) as err:
            raise RolloutError(
                f"the path server {client.client.url} of source {self.source.name!r} failed "
                f"while the rollouts asked {label}: {vlm.as_sentence(str(err))} {self.hint}"
                "Once it answers again, rerun the job: its rollouts start again from the first."
            ) from err

    def close(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)
        for client in self.clients:
            client.close()


# --- one rollout, and a batch of them ----------------------------------------------------------


@dataclass
class Rollout:
    """One rollout: its environment, the deployed policy's episode, and what it did."""

    task: str
    index: int
    env: TableTopEnv
    episode: Episode
    instruction: str
    actions: list[np.ndarray] = field(default_factory=list)
    reach: list[float] = field(default_factory=list)  # fingertip–object distance, xy, per step
    closest: float = float("inf")  # the fingertip's closest approach to the object (3-D), metres
    calls: int = 0  # chunks sampled for it
    frames: list[tuple[np.ndarray, np.ndarray]] | None = None  # (scene, seen) when animated

    @property
    def done(self) -> bool:
        env = self.env
        return env.eval_success or env.take_action_cnt >= env.step_lim

    def measure(self) -> None:
        state = self.env.state
        self.reach.append(float(np.linalg.norm(state.tip[:2] - state.obj[:2])))
        self.closest = min(self.closest, float(np.linalg.norm(state.tip - state.obj)))

    def take(self, action: np.ndarray) -> None:
        self.env.take_action(action, action_type="qpos")
        self.actions.append(np.asarray(action))
        self.measure()

    def result(self) -> dict[str, Any]:
        """What the results keep of the rollout (one row of the CSV)."""
        env, statuses = self.env, self.episode.statuses
        hidden = hidden_steps(env.visibility, self.reach)
        return {
            "task": self.task,
            "index": self.index,
            "success": bool(env.eval_success),
            "steps": env.take_action_cnt,
            "grasped_at": env.grasped_at,
            "closest_m": round(self.closest, 4),
            "occluded": hidden is not None,
            "hidden_steps": hidden or 0,
            "chunks": self.calls,
            "paths_asked": sum(statuses.values()),
            "paths_good": sum(statuses[s] for s in GOOD),
        }


def start_rollout(
    deployed: DeployedPolicy, make_env: MakeEnv, task: str, index: int, animate: bool = False
) -> Rollout:
    """Rollout ``index`` of ``task``, not started."""
    env = make_env(task, index)
    episode = deployed.new_episode(f"{task} scene {index}", seed=noise_seed(task, index))
    rollout = Rollout(task, index, env, episode, env.get_instruction())
    rollout.frames = [] if animate else None
    rollout.measure()
    return rollout


def run_batch(
    deployed: DeployedPolicy,
    rollouts: Sequence[Rollout],
    paths: BatchPaths | None = None,
    tick: Callable[[int], None] | None = None,
) -> int:
    """Run ``rollouts`` to their ends together (see the module); returns the network calls.
    ``tick(running)`` is called after every chunk."""
    _observe(deployed, rollouts, paths)
    running, calls = list(rollouts), 0
    while running:
        chunks = deployed.act([r.episode for r in running])
        calls += 1
        for k in range(chunks.shape[1]):
            stepped = []
            for rollout, chunk in zip(running, chunks, strict=True):
                if rollout.done:
                    continue
                rollout.take(chunk[k])
                if not rollout.done:
                    stepped.append(rollout)
            _observe(deployed, stepped, paths)
        for rollout in running:
            rollout.calls += 1
        running = [r for r in running if not r.done]
        if tick is not None:
            tick(len(running))
    return calls


def _observe(
    deployed: DeployedPolicy, rollouts: Sequence[Rollout], paths: BatchPaths | None
) -> None:
    """Every rollout observes its current frame; the due paths are asked first, together."""
    observations = [r.env.get_obs() for r in rollouts]
    due = [i for i, r in enumerate(rollouts) if deployed.due(r.episode)]
    records: dict[int, Any] = {}
    if due and paths is not None:
        asks = []
        for i in due:
            episode = rollouts[i].episode
            frame = camera_frame(observations[i], deployed.camera)
            label = f"{episode.label} step {episode.steps}"
            asks.append((episode.steps, frame, rollouts[i].instruction, label))
        records = dict(zip(due, paths.answer_all(asks), strict=True))
    for i, rollout in enumerate(rollouts):
        deployed.observe(rollout.episode, observations[i], rollout.instruction, records.get(i))
        if rollout.frames is not None:
            scene = rollout.env.view(HEAD).rgb
            rollout.frames.append((scene, rollout.episode.images[-1]))


# --- many rollouts ------------------------------------------------------------------------------


class Progress:
    """Progress lines by time (every `PROGRESS_SECONDS`): rollouts done, successes so far."""

    def __init__(self, what: str, total: int, every_s: float = PROGRESS_SECONDS) -> None:
        self.what, self.total, self.every_s = what, total, every_s
        self.done = self.successes = 0
        self.start = self.last = time.monotonic()

    def tick(self, running: int) -> None:
        now = time.monotonic()
        if now - self.last >= self.every_s:
            self.last = now
            self.report(running)

    def finished(self, results: Sequence[Mapping[str, Any]]) -> None:
        self.done += len(results)
        self.successes += sum(r["success"] for r in results)
        self.tick(0)

    def report(self, running: int = 0) -> None:
        seconds = time.monotonic() - self.start
        log.info(
            "%s: %d/%d rollouts done (%d running), %d successes so far, %.0f s",
            self.what,
            self.done,
            self.total,
            running,
            self.successes,
            seconds,
        )


@dataclass
class Rollouts:
    """What `run_rollouts` gives: one result per rollout in (task, index) order, the actions and
    animation frames of each, and the network calls."""

    results: list[dict[str, Any]] = field(default_factory=list)
    actions: list[np.ndarray] = field(default_factory=list)
    frames: dict[tuple[str, int], list[tuple[np.ndarray, np.ndarray]]] = field(default_factory=dict)
    calls: int = 0


def animated(tasks: Sequence[str], indexes: Sequence[int], count: int) -> list[tuple[str, int]]:
    """The ``count`` rollouts (task, scene index) that keep their frames: the first scene of
    each task, then the second of each, …"""
    n = min(count, len(tasks) * len(indexes))
    return [(tasks[k % len(tasks)], indexes[k // len(tasks)]) for k in range(n)]


def run_rollouts(
    policies: Mapping[str, DeployedPolicy],
    make_env: MakeEnv,
    indexes: Sequence[int],
    batch: int,
    paths: BatchPaths | None = None,
    animate: Collection[tuple[str, int]] = (),
    progress: Progress | None = None,
) -> Rollouts:
    """The rollouts of scenes ``indexes`` of every task of ``policies`` (task → its deployed
    policy), ``batch`` at a time; those in ``animate`` (task, index) keep their frames."""
    out = Rollouts()
    for task, deployed in policies.items():
        for lo in range(0, len(indexes), batch):
            group = [
                start_rollout(deployed, make_env, task, index, (task, index) in animate)
                for index in indexes[lo : lo + batch]
            ]
            out.calls += run_batch(deployed, group, paths, progress.tick if progress else None)
            results = [rollout.result() for rollout in group]
            out.results += results
            out.actions += [np.array(rollout.actions) for rollout in group]
            out.frames |= {(r.task, r.index): r.frames for r in group if r.frames is not None}
            if progress is not None:
                progress.finished(results)
    return out
