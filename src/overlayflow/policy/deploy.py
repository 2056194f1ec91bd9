"""A trained experiment acting in closed loop: observations in, unnormalized joint actions out.

A `DeployedPolicy` is the EMA policy of an experiment's ``model.pt`` with everything it needs to
see a simulator's frames as it saw the dataset's: the camera, the layout, the observation builder
of the overlay settings (``overlayflow.overlays.observation``), the path source asked online
(``overlayflow.policy.online``) and the task id. What changes during an episode lives in an
`Episode` (the frames seen, the last good path, the memory), so that B episodes can be stepped
together: `observe` takes one episode's new observation, `act` samples one chunk per episode in
one network call. The timeline, as in the dataset (To = n_obs_steps)::

    step t        observe(frame t, joint state t)    the path asked at t when the cadence says so
    act           current = images of steps t-To+1 .. t (step 0 repeated before the start),
                  initial = the image of step 0 (memory), agent_pos = the joint states of the
                  same steps → chunk[To-1 : To-1+n_action_steps], unnormalized

An observation is RoboTwin's: ``observation["observation"][camera]["rgb"]`` (H, W, 3) uint8 true
RGB and ``observation["joint_action"]["vector"]`` (state_dim,).
"""

from __future__ import annotations

import logging
from collections import Counter, deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from overlayflow.dataset.samples import observation_tensors
from overlayflow.overlays.draw import PathSpec
from overlayflow.overlays.observation import ObservationBuilder, path_spec
from overlayflow.paths.records import GOOD
from overlayflow.policy.checkpoint import load_policy
from overlayflow.policy.model import ManiFlowPolicy, resolve_device
from overlayflow.policy.online import PathSource, asks
from overlayflow.settings import CHANNELS, LAYOUTS, OverlaySettings

log = logging.getLogger(__name__)


class DeployError(ValueError):
    """An observation, a model or a setting the deployed policy cannot use; says what to do."""


@dataclass
class Episode:
    """What a deployed policy keeps of one episode: made by `DeployedPolicy.new_episode`."""

    label: str
    steps: int = 0  # observations seen; the next one is step `steps`
    images: deque = field(default_factory=deque)  # the last To images, (C, H, W) uint8
    states: deque = field(default_factory=deque)  # the last To joint states, float32
    initial: np.ndarray | None = None  # the image of step 0 (the memory)
    memory: torch.Tensor | None = None  # its features (To·features,), encoded at the first act
    path: PathSpec | None = None  # the last good path, drawn on every frame
    statuses: Counter = field(default_factory=Counter)  # answers of the asked frames
    # The episode's own sampling noise (`new_episode`'s seed): what it does then does not depend
    # on the episodes it is batched with.
    generator: torch.Generator | None = None


def camera_frame(observation: Mapping[str, Any], camera: str) -> np.ndarray:
    """The camera's (H, W, 3) uint8 true-RGB frame of a RoboTwin observation."""
    cameras = observation.get("observation") if isinstance(observation, Mapping) else None
    if not isinstance(cameras, Mapping):
        raise DeployError(
            "a RoboTwin observation is a dict holding observation['observation'][camera]['rgb']; "
            f"got a {type(observation).__name__} without it"
        )
    if camera not in cameras:
        raise DeployError(
            f"camera {camera!r} (config key data.camera) is not in the observation; it has "
            f"{sorted(cameras)}. Set data.camera to the camera the experiment was trained on, "
            "and collect it in RoboTwin's task config (camera settings)."
        )
    rgb = cameras[camera].get("rgb") if isinstance(cameras[camera], Mapping) else None
    if rgb is None:
        raise DeployError(
            f"camera {camera!r} has no 'rgb' image in the observation (keys "
            f"{sorted(cameras[camera]) if isinstance(cameras[camera], Mapping) else '?'}): "
            "enable rgb in RoboTwin's task config (data_type)"
        )
    return np.asarray(rgb)


def joint_state(observation: Mapping[str, Any], dim: int) -> np.ndarray:
    """``observation["joint_action"]["vector"]`` as float32 (dim,)."""
    try:
        vector = np.asarray(observation["joint_action"]["vector"], dtype=np.float32)
    except (KeyError, TypeError) as err:
        raise DeployError(
            "a RoboTwin observation holds the joint state as observation['joint_action']"
            f"['vector']; it is missing ({err!r})"
        ) from None
    if vector.shape != (dim,):
        raise DeployError(
            f"the joint state has shape {vector.shape}; the policy was trained on {dim}-D states "
            "(6-joint arms give 14, 7-joint arms 16): is it the same embodiment?"
        )
    return vector


class DeployedPolicy:
    """An experiment's policy with its observation builder and path source (see the module)."""

    def __init__(
        self,
        policy: ManiFlowPolicy,
        *,
        layout: str,
        camera: str,
        builder: ObservationBuilder,
        task_id: int = 0,
        paths: PathSource | None = None,
        seed: int = 0,
    ) -> None:
        cfg = policy.cfg
        if layout not in LAYOUTS:
            raise DeployError(f"`layout` must be one of {LAYOUTS}. Got {layout!r}.")
        if CHANNELS[layout] != cfg.image_channels:
            raise DeployError(
                f"layout {layout} gives {CHANNELS[layout]}-channel images; the policy takes "
                f"{cfg.image_channels}: is it the experiment's model.pt?"
            )
        if layout != "rgb" and paths is None:
            raise DeployError(f"layout {layout} draws paths: a path source is needed")
        self.policy = policy
        self.layout = layout
        self.camera = camera
        self.builder = builder
        self.task_id = task_id
        self.paths = paths if layout != "rgb" else None
        self.memory = "initial" in cfg.image_keys
        self.generator = torch.Generator(device=policy.device).manual_seed(seed)

    @classmethod
    def load(
        cls,
        model: str | Path,
        *,
        layout: str,
        camera: str,
        overlay: OverlaySettings,
        task: str,
        paths: PathSource | None = None,
        device: str = "auto",
        seed: int = 0,
    ) -> DeployedPolicy:
        """The EMA policy of ``model`` (a ``model.pt``; `CheckpointError` if of another format)
        on ``device`` (auto: CUDA when torch sees it), acting on RoboTwin task ``task``."""
        policy, ckpt = load_policy(model, resolve_device(device))
        tasks = list(ckpt["tasks"])
        if task not in tasks:
            raise DeployError(
                f"{model} was trained on tasks {tasks}; it cannot act on task {task!r} (its task "
                "id conditions the policy). Evaluate it on one of those tasks."
            )
        log.info("%s: step %d, task %s, layout %s", model, ckpt["step"], task, layout)
        builder = ObservationBuilder.from_settings(overlay)
        return cls(
            policy,
            layout=layout,
            camera=camera,
            builder=builder,
            task_id=tasks.index(task),
            paths=paths,
            seed=seed,
        )

    @property
    def n_action_steps(self) -> int:
        return self.policy.cfg.n_action_steps

    @property
    def action_dim(self) -> int:
        return self.policy.cfg.action_dim

    def new_episode(self, label: str = "episode", seed: int | None = None) -> Episode:
        """A fresh episode (``label`` names its frames in a server's error messages); with a
        ``seed``, its sampling noise is its own (see `act`)."""
        to = self.policy.cfg.n_obs_steps
        generator = None
        if seed is not None:
            generator = torch.Generator(device=self.policy.device).manual_seed(seed)
        return Episode(label, images=deque(maxlen=to), states=deque(maxlen=to), generator=generator)

    def due(self, episode: Episode) -> bool:
        """Whether the episode's next observation asks the path source (its cadence)."""
        return self.paths is not None and asks(episode.steps, self.paths.every)

    def observe(
        self,
        episode: Episode,
        observation: Mapping[str, Any],
        instruction: str,
        record: Mapping[str, Any] | None = None,
    ) -> None:
        """Take the episode's next observation: ask its path when the cadence says so, draw it.

        ``record``: the answer of that frame when the caller asked it already (batched rollouts
        ask the due frames of many episodes at once), else it is asked here."""
        step = episode.steps
        frame = camera_frame(observation, self.camera)
        state = joint_state(observation, self.policy.cfg.state_dim)
        if self.due(episode):
            if record is None:
                record = self.paths.answer(step, frame, instruction, f"{episode.label} step {step}")
            episode.statuses[record["status"]] += 1
            if record["status"] in GOOD:
                episode.path = path_spec(record)
        image = self.builder.frame(frame, episode.path, f"{self.camera} rgb").layout(self.layout)
        if step == 0:
            episode.initial = image
            # Before the first frame the window repeats it, as the dataset pads an episode's start.
            episode.images.extend([image] * (episode.images.maxlen - 1))
            episode.states.extend([state] * (episode.states.maxlen - 1))
        episode.images.append(image)
        episode.states.append(state)
        episode.steps += 1

    def inputs(self, episodes: Sequence[Episode]) -> dict[str, torch.Tensor]:
        """The network's batch of the episodes' windows: ``current``, ``initial`` (with memory),
        ``agent_pos`` and ``task``, as the DataLoader collates the dataset's samples."""
        if not episodes or any(episode.steps == 0 for episode in episodes):
            raise DeployError("every episode needs an observation before the policy acts")
        samples = [
            observation_tensors(
                np.stack(episode.images),
                episode.initial if self.memory else None,
                np.stack(episode.states),
            )
            for episode in episodes
        ]
        batch = {key: torch.stack([s[key] for s in samples]) for key in samples[0]}
        batch["task"] = torch.full((len(episodes),), self.task_id, dtype=torch.int64)
        return batch

    @torch.no_grad()
    def act(self, episodes: Sequence[Episode]) -> np.ndarray:
        """One chunk per episode in one network call: (B, n_action_steps, action_dim) float32,
        unnormalized joint targets. Episodes that all have their own generator draw their own
        noise, so an episode acts the same alone or in any batch; else the noise comes from the
        policy's generator."""
        obs = self.inputs(episodes)
        features = None
        if self.memory:
            self._encode_memory(episodes)
            features = {"initial": torch.stack([episode.memory for episode in episodes])}
        cfg = self.policy.cfg
        device = self.policy.device
        if all(episode.generator is not None for episode in episodes):
            shape = (1, cfg.horizon, cfg.action_dim)
            noise = torch.cat(
                [torch.randn(shape, generator=e.generator, device=device) for e in episodes]
            )
        else:
            shape = (len(episodes), cfg.horizon, cfg.action_dim)
            noise = torch.randn(shape, generator=self.generator, device=device)
        chunk = self.policy.sample_chunk(obs, noise=noise, features=features)
        start = cfg.n_obs_steps - 1
        return chunk[:, start : start + cfg.n_action_steps].float().cpu().numpy()

    def _encode_memory(self, episodes: Sequence[Episode]) -> None:
        """Encode the first image of the episodes that have none encoded yet, in one call: the
        memory is the same image all episode long, so its features are computed once."""
        fresh = [episode for episode in episodes if episode.memory is None]
        if fresh:
            initial = torch.from_numpy(np.stack([episode.initial for episode in fresh]))
            for episode, row in zip(fresh, self.policy.encode_memory(initial), strict=True):
                episode.memory = row
