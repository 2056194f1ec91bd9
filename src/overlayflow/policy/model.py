"""The ManiFlow-style image policy (reference/maniflow.md): ResNet-18/GroupNorm encoders, a DiT-X
action transformer, flow matching + consistency flow with an EMA teacher, Euler sampling.

Timeline (To = n_obs_steps, Ta = n_action_steps, T = horizon), as in Diffusion Policy::

    observations  |o0 o1|                      initial, current: (B, To, C, H, W) uint8
                                               agent_pos: (B, To, state_dim) float32, task: (B,) int64
    action chunk  |a0 a1 a2 ... a15|           action: (B, T, action_dim), predicted whole
    executed         |a1 ... a15|              chunk[:, To-1 : To-1+Ta]

Per image key, the To frames' 512-d features are concatenated; all keys and the raw (not
normalized, as ManiFlow on RoboTwin) agent_pos form ONE conditioning vector (2·2·512 + 2·14 = 2076
for initial+current, 1052 for current only) that is the single cross-attention context token.
Flow convention: t = 0 is noise, t = 1 is data, x_t = (1 − t)·x0 + t·x1, x1 the normalized chunk.

Beside ManiFlow's objective, ``image_action_weight`` > 0 adds an auxiliary loss: a small head
regresses x1 from the image features alone (the conditioning vector without agent_pos). In
demonstrations that approach their target in a straight line, the arm's state already says where it
is heading after the first frames, and the flow losses alone then teach the policy to follow the
state, not to look; the head's loss needs the image on every frame. It is used in training only.
"""

from __future__ import annotations

import contextlib
import logging
import math
from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from timm.utils import ModelEmaV3
from torch import nn

from overlayflow.dataset.normalizer import LimitsNormalizer
from overlayflow.policy.ditx import DiTX
from overlayflow.policy.encoders import ImageEncoder, augment_images
from overlayflow.settings import PolicyConfig

logger = logging.getLogger(__name__)


# Objective


def consistency_target(
    x_t: torch.Tensor,
    x_t_next: torch.Tensor,
    t: torch.Tensor,
    t_next: torch.Tensor,
    v_teacher: torch.Tensor,
) -> torch.Tensor:
    """ManiFlow's consistency-flow target: x̂1 = x_t' + (1 − t')·v̄, v = (x̂1 − x_t) / (1 − t).

    t, t_next are (B,) with t < 1; x_t, x_t_next, v_teacher (B, ...). When t' = 1 the teacher is
    not used and the target is x1 − x0 exactly.
    """
    shape = (-1,) + (1,) * (x_t.ndim - 1)
    t, t_next = t.reshape(shape), t_next.reshape(shape)
    x1_hat = x_t_next + (1 - t_next) * v_teacher
    return (x1_hat - x_t) / (1 - t)


def split_batch(batch_size: int, flow_ratio: float) -> tuple[int, int]:
    """(flow, consistency) sample counts: the ratio rounded, at least one each when B >= 2.

    ManiFlow floors both parts (int(B·0.75), int(B·0.25)) and so drops samples when B·0.25 is not
    an integer; here the two parts always add up to B.
    """
    n_flow = math.floor(batch_size * flow_ratio + 0.5)
    if flow_ratio < 1 and batch_size >= 2:
        n_flow = min(max(n_flow, 1), batch_size - 1)
    return n_flow, batch_size - n_flow


def _rms(v: torch.Tensor) -> torch.Tensor:
    return v.detach().pow(2).mean().sqrt()


def _interpolate(x0: torch.Tensor, x1: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    t = t.view(-1, 1, 1)
    return (1 - t) * x0 + t * x1


# Policy


class ManiFlowPolicy(nn.Module):
    """Encoders + DiT-X + the action normalizer (as buffers ``action_scale``/``action_offset``).

    The interface: `compute_loss` for training, `predict_action` (the executed actions) and
    `sample_chunk` (the whole chunk) for inference.

    ``load_weights=False`` skips reading ``cfg.weights`` when a checkpoint's state dict will be
    loaded anyway (the ImageNet normalization that goes with pretrained weights still applies).
    """

    def __init__(
        self, cfg: PolicyConfig, normalizer: LimitsNormalizer, *, load_weights: bool = True
    ) -> None:
        super().__init__()
        if normalizer.dim != cfg.action_dim:
            raise ValueError(
                f"the action normalizer was fitted on {normalizer.dim} dimensions; the policy's "
                f"`action_dim` is {cfg.action_dim}"
            )
        self.cfg = cfg
        weights = cfg.weights if load_weights else None
        names = ("shared",) if cfg.shared_encoder else cfg.image_keys
        self.encoders = nn.ModuleDict(
            {
                name: ImageEncoder(
                    cfg.backbone,
                    cfg.image_channels,
                    weights,
                    imagenet_norm=cfg.weights is not None,
                    coords=cfg.coords,
                )
                for name in names
            }
        )
        self.transformer = DiTX(cfg)
        if cfg.image_action_weight > 0:  # the auxiliary head (module docstring); none otherwise
            self.image_action = nn.Sequential(
                nn.Linear(cfg.image_dim, 2 * cfg.width),
                nn.Mish(),
                nn.Linear(2 * cfg.width, cfg.horizon * cfg.action_dim),
            )
        self.register_buffer("action_scale", torch.as_tensor(normalizer.scale, dtype=torch.float32))
        self.register_buffer(
            "action_offset", torch.as_tensor(normalizer.offset, dtype=torch.float32)
        )
        # On the policy's device, so drawing flow times never copies from the host.
        self.register_buffer(
            "flow_t_beta", torch.tensor(cfg.flow_t_beta, dtype=torch.float32), persistent=False
        )
        # A plain list keeps the teacher out of parameters(), state_dict() and .to().
        self._teacher: list[DiTX] = []
        logger.info(
            "policy: %d parameters (transformer %d, encoders %d), conditioning %d",
            count_parameters(self),
            count_parameters(self.transformer),
            count_parameters(self.encoders),
            cfg.cond_dim,
        )

    @property
    def device(self) -> torch.device:
        return self.action_scale.device

    def normalize(self, action: torch.Tensor) -> torch.Tensor:
        return action * self.action_scale + self.action_offset

    def unnormalize(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.action_offset) / self.action_scale

    def set_teacher(self, transformer: DiTX) -> None:
        """The EMA copy's transformer: the consistency teacher (``EMA(policy)`` calls this)."""
        if not isinstance(transformer, DiTX) or transformer is self.transformer:
            raise ValueError("the teacher must be the EMA copy's DiTX transformer, not the student")
        self._teacher[:] = [transformer]

    def to_device(self, device: str | torch.device) -> ManiFlowPolicy:
        """Move to ``device``; on CUDA the encoders also switch to channels_last."""
        self.to(device)
        if torch.device(device).type == "cuda":
            self.encoders.to(memory_format=torch.channels_last)
        return self

    def preprocess(self, images: torch.Tensor, key: str, augment: bool) -> torch.Tensor:
        """(B, >=To, C, H, W) uint8 (or float in [0, 1]) → (B·To, C, S, S) float on the device."""
        cfg, to = self.cfg, self.cfg.n_obs_steps
        if images.ndim != 5 or images.shape[1] < to or images.shape[2] != cfg.image_channels:
            raise ValueError(
                f"`{key}` must be (B, {to}, {cfg.image_channels}, H, W) images. "
                f"Got shape {tuple(images.shape)}."
            )
        x = images[:, :to].to(self.device, non_blocking=True)
        x = x.float() / 255.0 if x.dtype == torch.uint8 else x.float()
        x = x.flatten(0, 1)
        if x.shape[-2:] != (cfg.image_size, cfg.image_size):
            x = F.interpolate(x, size=(cfg.image_size,) * 2, mode="bilinear", align_corners=False)
        return augment_images(x, to, cfg) if augment else x

    def encode_memory(self, initial: torch.Tensor) -> torch.Tensor:
        """The features of the ``initial`` key for episodes' first images (B, C, H, W), each
        encoded once and repeated To times: (B, To·features), as `encode_obs` gives them for
        the To copies a sample holds. A deployed policy computes them once per episode."""
        cfg, to = self.cfg, self.cfg.n_obs_steps
        b = initial.shape[0]
        x = self.preprocess(initial[:, None].expand(-1, to, *initial.shape[1:]), "initial", False)
        encoder = self.encoders["shared" if cfg.shared_encoder else "initial"]
        return encoder(x.unflatten(0, (b, to))[:, 0]).repeat(1, to)

    def encode_obs(
        self,
        obs: Mapping[str, torch.Tensor],
        augment: bool = False,
        features: Mapping[str, torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """The conditioning vector (B, cond_dim): image features of every key, then agent_pos.
        ``features`` holds keys already encoded, (B, To·features) each (`encode_memory`)."""
        cfg, to = self.cfg, self.cfg.n_obs_steps
        features_of = dict(features or {})
        for key in (*cfg.image_keys, "agent_pos"):
            if key not in obs and key not in features_of:
                raise KeyError(f"the observation needs {key!r}; it has {sorted(obs)}")
        state = obs["agent_pos"]
        if state.ndim != 3 or state.shape[1] < to or state.shape[2] != cfg.state_dim:
            raise ValueError(
                f"`agent_pos` must be (B, {to}, {cfg.state_dim}). Got shape {tuple(state.shape)}."
            )
        b = state.shape[0]
        features = []
        for key in cfg.image_keys:
            if key in features_of:
                features.append(features_of[key].to(self.device))
                continue
            encoder = self.encoders["shared" if cfg.shared_encoder else key]
            features.append(encoder(self.preprocess(obs[key], key, augment)).reshape(b, -1))
        features.append(
            state[:, :to].to(self.device, torch.float32, non_blocking=True).reshape(b, -1)
        )
        return torch.cat(features, dim=-1)

    def _task(self, obs: Mapping[str, torch.Tensor], batch_size: int) -> torch.Tensor:
        if "task" not in obs:
            if self.cfg.n_tasks == 1:
                return torch.zeros(batch_size, dtype=torch.long, device=self.device)
            raise KeyError(f"the observation needs 'task' (n_tasks={self.cfg.n_tasks})")
        task = torch.as_tensor(obs["task"]).reshape(-1)
        # Checked where it is: ids from the loader are on the CPU, so the check does not wait
        # for the device.
        if task.shape[0] != batch_size or task.min() < 0 or task.max() >= self.cfg.n_tasks:
            raise ValueError(
                f"`task` must be {batch_size} ids in [0, {self.cfg.n_tasks}). Got {task.tolist()}."
            )
        return task.to(self.device, torch.long, non_blocking=True)

    def compute_loss(
        self, batch: Mapping[str, torch.Tensor]
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Flow loss on the first part of the batch, consistency loss (EMA teacher) on the rest,
        and the image-only action loss on all of it when ``image_action_weight`` > 0.

        Returns the loss and its parts as detached 0-d tensors on the device: reading them waits
        for the device, so the caller reads them only when it logs.
        """
        cfg = self.cfg
        action = batch["action"]
        if action.ndim != 3 or action.shape[1:] != (cfg.horizon, cfg.action_dim):
            raise ValueError(
                f"`action` must be (B, {cfg.horizon}, {cfg.action_dim}). "
                f"Got shape {tuple(action.shape)}."
            )
        b = action.shape[0]
        n_flow, n_cons = split_batch(b, cfg.flow_batch_ratio)
        if n_cons and not self._teacher:
            raise RuntimeError(
                "compute_loss needs the EMA teacher for the consistency loss: create "
                "`EMA(policy)` (it calls policy.set_teacher) before training; ManiFlow's "
                "consistency flow is not defined without the EMA copy."
            )
        x1 = self.normalize(action.to(self.device, torch.float32, non_blocking=True))
        cond = self.encode_obs(batch, augment=self.training and cfg.augment)
        task = self._task(batch, b)
        x0 = torch.randn_like(x1)
        flow, cons = slice(0, n_flow), slice(n_flow, b)
        metrics: dict[str, torch.Tensor] = {}
        losses = []

        if n_flow:
            t = cfg.flow_t_scale * torch.distributions.Beta(*self.flow_t_beta).sample((n_flow,))
            x_t = _interpolate(x0[flow], x1[flow], t)
            v = self.transformer(x_t, t, torch.zeros_like(t), cond[flow], task[flow]).float()
            losses.append(F.mse_loss(v, x1[flow] - x0[flow]))
            metrics.update(loss_flow=losses[-1].detach(), v_flow_rms=_rms(v))

        if n_cons:
            k = cfg.consistency_steps
            t = torch.randint(0, k, (n_cons,), device=self.device).float() / k
            dt = torch.rand(n_cons, device=self.device)
            t_next = (t + dt).clamp(max=1.0)
            x_t = _interpolate(x0[cons], x1[cons], t)
            x_next = _interpolate(x0[cons], x1[cons], t_next)
            with torch.no_grad():
                v_teacher = self._teacher[0](x_next, t_next, dt, cond[cons], task[cons]).float()
            target = consistency_target(x_t, x_next, t, t_next, v_teacher)
            v = self.transformer(x_t, t, dt, cond[cons], task[cons]).float()
            losses.append(F.mse_loss(v, target))
            metrics.update(loss_consistency=losses[-1].detach(), v_consistency_rms=_rms(v))

        if cfg.image_action_weight > 0:
            guess = self.image_action(cond[:, : cfg.image_dim]).view_as(x1)
            losses.append(cfg.image_action_weight * F.mse_loss(guess, x1))
            metrics["loss_image_action"] = losses[-1].detach() / cfg.image_action_weight

        loss = torch.stack(losses).sum()
        metrics["loss"] = loss.detach()
        return loss, metrics

    @torch.no_grad()
    def sample_chunk(
        self,
        obs: Mapping[str, torch.Tensor],
        generator: torch.Generator | None = None,
        steps: int | None = None,
        noise: torch.Tensor | None = None,
        features: Mapping[str, torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """Euler from x ~ N(0, I): x += (1/N)·v(x, i/N, 1/N) → unnormalized (B, horizon, action_dim).

        ``noise`` is the starting x (else drawn with ``generator``): each episode of a batch
        may bring its own. ``features``: image keys already encoded (`encode_obs`). Never
        augments; call ``.eval()`` first so attention dropout is off too.
        """
        cfg = self.cfg
        n = steps or cfg.inference_steps
        cond = self.encode_obs(obs, augment=False, features=features)
        b = cond.shape[0]
        task = self._task(obs, b)
        shape = (b, cfg.horizon, cfg.action_dim)
        if noise is None:
            x = torch.randn(shape, generator=generator, device=self.device)
        elif tuple(noise.shape) != shape:
            raise ValueError(f"noise of shape {tuple(noise.shape)}; expected {shape}")
        else:
            x = noise.to(self.device)
        dt = torch.full((b,), 1.0 / n, device=self.device)
        for i in range(n):
            t = torch.full((b,), i / n, device=self.device)
            x = x + self.transformer(x, t, dt, cond, task).float() / n
        return self.unnormalize(x)

    def predict_action(
        self,
        obs: Mapping[str, torch.Tensor],
        generator: torch.Generator | None = None,
        steps: int | None = None,
    ) -> torch.Tensor:
        """The executed actions: chunk[:, To−1 : To−1+n_action_steps], (B, n_action_steps, dim)."""
        start = self.cfg.n_obs_steps - 1
        return self.sample_chunk(obs, generator, steps)[:, start : start + self.cfg.n_action_steps]

    def optim_groups(self, weight_decay: float) -> list[dict[str, Any]]:
        """AdamW groups: Linear/Conv weights decay; biases, norms, embeddings and positions don't."""
        decay, no_decay = [], []
        for module in self.modules():
            for name, param in module.named_parameters(recurse=False):
                if not param.requires_grad:
                    continue
                weights = isinstance(module, (nn.Linear, nn.Conv2d)) and name == "weight"
                (decay if weights else no_decay).append(param)
        return [
            {"params": decay, "weight_decay": weight_decay},
            {"params": no_decay, "weight_decay": 0.0},
        ]


class EMA(ModelEmaV3):
    """The policy's EMA copy, whose transformer becomes the consistency teacher: timm's
    `ModelEmaV3` with ManiFlow's (diffusion_policy's EMAModel) decay schedule.

    timm's warm-up is that schedule's formula: 0 for the first two updates, then
    1 − (1 + s / inv_gamma)^−power with s = step − 1 and inv_gamma 1, at most ``ema_max``.
    `update` takes the number of updates done before it, the training step, which the checkpoint
    keeps: a resumed run continues the warm-up (ManiFlow's restarts it). Parameters are averaged,
    buffers (the action normalizer) copied.
    """

    def __init__(self, policy: ManiFlowPolicy) -> None:
        # The copy needs no teacher of its own; the student gets the copy's transformer below.
        policy._teacher.clear()
        super().__init__(
            policy,
            decay=policy.cfg.ema_max,
            use_warmup=True,
            warmup_gamma=1.0,
            warmup_power=policy.cfg.ema_power,
            exclude_buffers=True,
        )
        self.module.requires_grad_(False)
        policy.set_teacher(self.module.transformer)

    def update(self, model: ManiFlowPolicy, step: int) -> None:
        """Average ``model`` in with the decay of ``step``, which is required: timm's default
        (None) would apply ``ema_max`` from the first update."""
        super().update(model, step)


def resolve_device(name: str) -> torch.device:
    """``auto`` is CUDA when torch sees it, else the CPU; an unavailable CUDA device is an error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError(f"device {name!r} asked for, but torch sees no CUDA device")
    return torch.device(name)


def autocast(device: str | torch.device) -> contextlib.AbstractContextManager:
    """bf16 autocast on CUDA; nothing on CPU (bf16 there is slow and the demo trains in fp32)."""
    if torch.device(device).type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def count_parameters(module: nn.Module) -> int:
    """Parameters of ``module``, each shared tensor counted once."""
    return sum(p.numel() for p in module.parameters())
