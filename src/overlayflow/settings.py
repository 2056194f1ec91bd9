"""The typed settings of the whole workflow: one frozen object per config section.

:func:`overlayflow.config.load` fills every default from ``schema.yaml`` (the only place defaults
are written down), checks the config and builds these objects; everything downstream takes them
as they are and checks nothing again. The policy's cross-field rules (window sizes, divisibility)
live in :class:`PolicyConfig` because a checkpoint's policy settings are rebuilt from it too.

Torch-free and cheap to import on purpose: every SLURM job re-parses the Snakefile, which builds
these objects.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, ClassVar

from overlayflow.schema import check_section, schema_defaults

LAYOUTS = ("overlay", "concat6", "rgb")
CHANNELS = {"overlay": 3, "concat6": 6, "rgb": 3}
MEMORY_MODES = ("initial+current", "current")
MEMORY_TAGS = {"initial+current": "mem", "current": "cur"}
IMAGE_KEYS = {"initial+current": ("initial", "current"), "current": ("current",)}
# Pooled features of each GroupNorm ResNet (resnet_tiny: `policy.encoders.create_backbone`).
BACKBONE_FEATURES = {"resnet10t": 512, "resnet18": 512, "resnet34": 512, "resnet_tiny": 128}


def _tuples(data: Mapping[str, Any]) -> dict[str, Any]:
    return {k: tuple(v) if isinstance(v, list) else v for k, v in data.items()}


def _plain(value: Any) -> Any:
    if isinstance(value, _Section):
        return value.to_dict()
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    return value


class _Section:
    """Shared by the settings dataclasses: their plain data (lists, strings) and back.

    Rules pass settings to their scripts as this plain data: Snakemake tracks only builtin
    values, so a changed setting reruns exactly the jobs that take it.
    """

    def to_dict(self) -> dict[str, Any]:
        data = {f.name: _plain(getattr(self, f.name)) for f in fields(self)}
        kind = getattr(type(self), "kind", None)
        return {"kind": kind, **data} if kind else data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Any:
        """The settings object of ``to_dict``'s data (already checked when the config loaded)."""
        return cls(**{f.name: _typed(f.type, data[f.name]) for f in fields(cls)})


def _typed(annotation: str, value: Any) -> Any:
    """A plain value back in the type of its field (annotations are strings here)."""
    if annotation in ("Path", "Path | None") and value is not None:
        return Path(value)
    if annotation in _SECTIONS and isinstance(value, Mapping):
        return _SECTIONS[annotation].from_dict(value)
    if isinstance(value, list):
        nested = annotation.startswith("tuple[tuple")
        return tuple(tuple(v) if nested else v for v in value)
    return value


# --- data -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DataSettings(_Section):
    root: Path
    embodiment: str | None
    setting: str
    camera: str
    tasks: tuple[str, ...]
    episodes: int | tuple[int, ...] | str
    action: str

    def episode_names(self) -> dict[str, list[str]]:
        """Episode names (``episode{i}``) per task, in index order.

        ``"all"`` lists the files under data.root when called: it needs the data to exist.
        """
        if isinstance(self.episodes, int):
            return {task: [f"episode{i}" for i in range(self.episodes)] for task in self.tasks}
        if isinstance(self.episodes, tuple):
            return {task: [f"episode{i}" for i in sorted(self.episodes)] for task in self.tasks}
        from overlayflow.robotwin.discovery import all_episode_names

        return all_episode_names(self.root, self.tasks, self.setting, self.embodiment)


@dataclass(frozen=True)
class SyntheticSettings(_Section):
    enabled: bool
    seed: int
    width: int
    height: int
    step: float
    cameras: tuple[str, ...]
    layout: str
    arm_joints: int


# --- paths ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class OracleSource(_Section):
    """``paths.sources.<name>`` with ``kind: oracle``: the recorded trajectory, projected."""

    kind: ClassVar[str] = "oracle"
    name: str
    every: int
    tool_offset: tuple[float, float, float]
    simplify: float
    until: str


@dataclass(frozen=True)
class VLMSource(_Section):
    """``paths.sources.<name>`` with ``kind: vlm``: HAMSTER or PEEK servers over HTTP."""

    kind: ClassVar[str] = "vlm"
    name: str
    every: int
    protocol: str
    model: str
    max_tokens: int
    timeout: float
    retries: int
    backoff: float
    urls: tuple[tuple[str, ...], ...]
    launch: str | None
    shards: int
    servers_per_shard: int
    base_port: int
    ready_timeout: float

    @property
    def n_shards(self) -> int:
        """Shard jobs: one per list of running servers, or ``shards`` launching their own."""
        return len(self.urls) if self.urls else self.shards

    @property
    def launched_gpus(self) -> int:
        """GPUs a shard job needs: one per server it launches (none for running ``urls``)."""
        return 0 if self.urls else self.servers_per_shard


Source = OracleSource | VLMSource


def source_from_dict(name: str, data: Mapping[str, Any]) -> Source:
    """A source from its validated config entry or its `to_dict` data."""
    cls = OracleSource if data["kind"] == "oracle" else VLMSource
    return cls.from_dict({**data, "name": name})


@dataclass(frozen=True)
class PathsSettings(_Section):
    journal_dir: Path
    sources: Mapping[str, Source]

    @property
    def oracle(self) -> str | None:
        """The first oracle source, against which VLM sources are measured (None: no oracle)."""
        return next((n for n, s in self.sources.items() if s.kind == "oracle"), None)


# --- overlays, datasets, previews -------------------------------------------------------------


@dataclass(frozen=True)
class OverlaySettings(_Section):
    size: tuple[int, int]
    open_colour: tuple[int, int, int]
    close_colour: tuple[int, int, int]
    colormap: str


@dataclass(frozen=True)
class DatasetsSettings(_Section):
    layouts: tuple[str, ...]
    sources: tuple[str, ...]
    min_path_success: float
    shard_frames: int

    def specs(self) -> dict[str, tuple[str | None, str]]:
        """Dataset name → (source, layout): ``{source}-{layout}`` for path layouts, ``rgb`` once."""
        specs: dict[str, tuple[str | None, str]] = {}
        for layout in self.layouts:
            if layout == "rgb":
                specs["rgb"] = (None, "rgb")
                continue
            for source in self.sources:
                specs[f"{source}-{layout}"] = (source, layout)
        return specs


@dataclass(frozen=True)
class PreviewsSettings(_Section):
    episodes: int
    columns: int
    tiles: int
    fps: int
    max_frames: int


# --- policy, training, evaluation -------------------------------------------------------------


def _fail(name: str, expected: str, value: Any) -> None:
    raise ValueError(f"`{name}` must be {expected}. Got {value!r}.")


@dataclass(frozen=True)
class PolicyConfig(_Section):
    """Every size and knob of the policy (``train.policy`` in the schema documents each).

    The schema checks each value's type and range; here are the rules between values, which a
    checkpoint's settings must meet as well. ``image_channels`` and ``n_tasks`` come from the
    experiment's dataset.
    """

    image_channels: int
    image_size: int
    memory: str
    shared_encoder: bool
    horizon: int
    n_obs_steps: int
    n_action_steps: int
    action_dim: int
    state_dim: int
    n_layers: int
    width: int
    heads: int
    mlp_ratio: float
    attn_dropout: float
    time_embed_dim: int
    n_tasks: int
    backbone: str
    weights: str | None
    coords: bool
    image_action_weight: float
    flow_batch_ratio: float
    consistency_steps: int
    flow_t_beta: tuple[float, float]
    flow_t_scale: float
    inference_steps: int
    augment: bool
    crop: float
    rotation: float
    jitter: tuple[float, float, float, float]
    ema_power: float
    ema_max: float

    def __post_init__(self) -> None:
        for name in ("flow_t_beta", "jitter"):
            object.__setattr__(self, name, tuple(getattr(self, name)))
        if self.image_channels not in (3, 6) or isinstance(self.image_channels, bool):
            _fail("image_channels", "3 (RGB, overlay) or 6 (RGB + path image)", self.image_channels)
        if self.memory not in MEMORY_MODES:
            _fail("memory", f"one of {MEMORY_MODES}", self.memory)
        if self.backbone not in BACKBONE_FEATURES:
            _fail("backbone", f"one of {tuple(BACKBONE_FEATURES)}", self.backbone)
        if self.n_obs_steps - 1 + self.n_action_steps > self.horizon:
            raise ValueError(
                "`n_obs_steps` - 1 + `n_action_steps` must be <= `horizon`: the executed actions "
                "are chunk[n_obs_steps-1 : n_obs_steps-1+n_action_steps], and ManiFlow's slice "
                "silently returns fewer actions when it runs past the chunk (16/2/16 gives 15). "
                f"Got horizon={self.horizon}, n_obs_steps={self.n_obs_steps}, "
                f"n_action_steps={self.n_action_steps}."
            )
        if self.width % self.heads:
            _fail("width", f"divisible by `heads` ({self.heads})", self.width)
        if self.time_embed_dim % 2:
            _fail("time_embed_dim", "even (half sine, half cosine)", self.time_embed_dim)
        if self.weights is not None and (
            not isinstance(self.weights, str) or not self.weights or self.backbone == "resnet_tiny"
        ):
            expected = "null (from scratch; always with backbone resnet_tiny) or a weights file"
            _fail("weights", expected, self.weights)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PolicyConfig:
        """From a complete mapping (a checkpoint's ``policy_config``); unknown keys are refused."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown policy settings {unknown}; allowed keys: {sorted(known)}")
        missing = sorted(known - set(data))
        if missing:
            raise ValueError(f"policy settings {missing} are missing")
        check_section(data, "train", "policy")
        return cls(**_tuples(data))

    @classmethod
    def defaults(cls, **overrides: Any) -> PolicyConfig:
        """The schema's defaults (the original project's 8 × 512 × 8 model) with ``overrides``."""
        defaults = {"image_channels": 3, "n_tasks": 1, **schema_defaults("train", "policy")}
        return cls.from_dict({**defaults, **overrides})

    @property
    def image_keys(self) -> tuple[str, ...]:
        return IMAGE_KEYS[self.memory]

    @property
    def feature_dim(self) -> int:
        return BACKBONE_FEATURES[self.backbone]

    @property
    def image_dim(self) -> int:
        """Length of the image features in the conditioning vector: every key and frame."""
        return len(self.image_keys) * self.n_obs_steps * self.feature_dim

    @property
    def cond_dim(self) -> int:
        """Length of the conditioning vector: image features of every key and frame + agent_pos."""
        return self.image_dim + self.n_obs_steps * self.state_dim


@dataclass(frozen=True)
class TrainSettings(_Section):
    """An experiment's ``train`` settings, its policy resolved (schema documents every key)."""

    # Settings that may change between a run and its resumption without invalidating it.
    RESUMABLE: ClassVar[frozenset[str]] = frozenset(
        {"steps", "checkpoint_every", "checkpoint_minutes", "log_every", "val_every"}  # cadences
        | {"num_workers", "images_in_memory_gb", "device", "wandb"}  # the machine
    )

    steps: int
    batch_size: int
    lr: float
    betas: tuple[float, float]
    weight_decay: float
    warmup_steps: int
    grad_clip: float
    val_ratio: float
    val_batches: int
    val_every: int
    checkpoint_every: int
    checkpoint_minutes: float
    log_every: int
    seed: int
    num_workers: int
    images_in_memory_gb: float
    device: str
    wandb: bool
    policy: PolicyConfig

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TrainSettings:
        values = _tuples({k: v for k, v in data.items() if k != "policy"})
        policy = data["policy"]
        if not isinstance(policy, PolicyConfig):
            policy = PolicyConfig.from_dict(policy)
        return cls(**values, policy=policy)

    @classmethod
    def defaults(cls, **overrides: Any) -> TrainSettings:
        """The schema's defaults with ``overrides`` (``policy`` a PolicyConfig or a mapping of
        overrides of the policy's defaults)."""
        policy = overrides.pop("policy", {})
        if not isinstance(policy, PolicyConfig):
            policy = PolicyConfig.defaults(**policy)
        data = {k: v for k, v in schema_defaults("train").items() if k != "policy"}
        return cls.from_dict({**data, **overrides, "policy": policy})


@dataclass(frozen=True)
class EvaluateSettings(_Section):
    windows: int
    batch_size: int
    inference_steps: int | None
    occluded_below: float
    seed: int


@dataclass(frozen=True)
class Experiment(_Section):
    """One experiment: its dataset and its resolved training settings."""

    name: str
    dataset: str
    layout: str
    source: str | None
    memory: str
    seed: int
    train: TrainSettings

    @property
    def tag(self) -> dict[str, Any]:
        """Layout, memory, source and seed: what the report's tables group by."""
        return {key: getattr(self, key) for key in ("layout", "memory", "source", "seed")}


@dataclass(frozen=True)
class ContainerSettings(_Section):
    paths: str | None
    train: str | None


@dataclass(frozen=True)
class SimSettings(_Section):
    path_source: str | None
    episodes: int
    first_index: int
    batch: int
    step_lim: int | None
    tolerance: float


@dataclass(frozen=True)
class RobotwinSettings(_Section):
    root: Path | None
    python: str
    task_config: str
    seed: int
    instruction_type: str
    policy_name: str
    tasks: tuple[str, ...]


# --- the whole config -------------------------------------------------------------------------


@dataclass(frozen=True)
class Settings(_Section):
    data: DataSettings
    synthetic: SyntheticSettings
    paths: PathsSettings
    overlay: OverlaySettings
    datasets: DatasetsSettings
    previews: PreviewsSettings
    experiments: Mapping[str, Experiment]
    evaluate: EvaluateSettings
    containers: ContainerSettings
    sim: SimSettings
    robotwin: RobotwinSettings

    def episodes(self) -> dict[str, list[str]]:
        return self.data.episode_names()


# Field types that are sections themselves, for `_Section.from_dict`.
_SECTIONS = {"PolicyConfig": PolicyConfig, "TrainSettings": TrainSettings}
