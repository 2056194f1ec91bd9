"""The workflow configuration: validated once against ``config/schema.yaml``, then typed.

``load(raw, schema)`` fills every default the schema declares, raises :class:`ConfigError` naming
the config key, what was expected and what was found, and returns a frozen :class:`Config`.
Parse-time code must stay cheap (every SLURM job re-parses the Snakefile): this module imports no
HDF5, image or array library.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jsonschema
import yaml


class ConfigError(ValueError):
    """A configuration value that does not match the schema or the data."""


def _with_defaults(validator_class):
    validate_properties = validator_class.VALIDATORS["properties"]

    def set_defaults(validator, properties, instance, schema):
        if isinstance(instance, dict):
            for name, sub in properties.items():
                if "default" in sub and name not in instance:
                    instance[name] = copy.deepcopy(sub["default"])
        yield from validate_properties(validator, properties, instance, schema)

    return jsonschema.validators.extend(validator_class, {"properties": set_defaults})


_Validator = _with_defaults(jsonschema.Draft7Validator)


def _key(error: jsonschema.ValidationError) -> str:
    return ".".join(str(p) for p in error.absolute_path) or "(top level)"


def _schema_at(schema: dict, path) -> dict:
    for part in path:
        schema = schema.get("properties", {}).get(part, {})
    return schema


def _describe(error: jsonschema.ValidationError, schema: dict) -> str:
    if error.validator == "additionalProperties":
        where = _key(error)
        allowed = sorted(error.schema.get("properties", {}))
        return f"config key {where}: {error.message}; allowed keys: {allowed}"
    key_schema = _schema_at(schema, error.absolute_path)
    description = " ".join(str(key_schema.get("description", "")).split())
    expected = f"; expected: {description}" if description else ""
    message = error.message
    if error.parent is not None and error.parent.validator in ("oneOf", "anyOf"):
        message = f"{error.parent.instance!r} is not valid"
    return f"config key {_key(error)}: {message}{expected}"


def validate(raw: dict[str, Any], schema: str | Path | dict) -> dict[str, Any]:
    """Fill defaults into a copy of ``raw`` and check it; the first problem raises ConfigError."""
    if not isinstance(schema, dict):
        schema = yaml.safe_load(Path(schema).read_text())
    filled = copy.deepcopy(dict(raw))
    errors = sorted(_Validator(schema).iter_errors(filled), key=lambda e: list(e.absolute_path))
    if errors:
        best = jsonschema.exceptions.best_match(errors)
        more = f" (and {len(errors) - 1} more problem(s))" if len(errors) > 1 else ""
        raise ConfigError(_describe(best, schema) + more)
    return filled


@dataclass(frozen=True)
class DataConfig:
    root: Path
    setting: str
    camera: str
    tasks: tuple[str, ...]
    episodes: int | tuple[int, ...] | str
    action: str


@dataclass(frozen=True)
class SyntheticConfig:
    enabled: bool
    seed: int
    width: int
    height: int
    step: float
    cameras: tuple[str, ...]


@dataclass(frozen=True)
class PathsConfig:
    journal_dir: Path
    sources: dict[str, dict[str, Any]]


@dataclass(frozen=True)
class Config:
    data: DataConfig
    synthetic: SyntheticConfig
    paths: PathsConfig

    def episodes(self) -> dict[str, list[str]]:
        """Episode names (``episode{i}``) per task, in index order.

        ``"all"`` lists the files under data.root when called: it needs the data to exist.
        """
        spec = self.data.episodes
        if isinstance(spec, int):
            names = [f"episode{i}" for i in range(spec)]
            return {task: list(names) for task in self.data.tasks}
        if isinstance(spec, tuple):
            names = [f"episode{i}" for i in sorted(spec)]
            return {task: list(names) for task in self.data.tasks}
        from overlayflow.episodes import EpisodeError, find_episodes

        found = {}
        for task in self.data.tasks:
            try:
                refs = find_episodes(self.data.root, task, self.data.setting)
            except EpisodeError as err:
                raise ConfigError(f"config key data.episodes is 'all', but {err}") from err
            if not refs:
                raise ConfigError(
                    f"config key data.episodes is 'all', but no episode*.hdf5 exists under "
                    f"{self.data.root / task / self.data.setting / 'data'}"
                )
            found[task] = [ref.name for ref in refs]
        return found


def load(raw: dict[str, Any], schema: str | Path | dict) -> Config:
    """Validate ``raw`` (Snakemake's ``config``) against ``schema`` and return the typed config."""
    c = validate(raw, schema)
    d, s = c["data"], c["synthetic"]
    episodes = d["episodes"]
    if isinstance(episodes, list):
        episodes = tuple(episodes)
    if s["enabled"] and episodes == "all":
        raise ConfigError(
            "config key data.episodes: 'all' lists existing files, but synthetic.enabled is true "
            "and the workflow generates them; give a count or a list of indices"
        )
    if s["enabled"] and d["camera"] not in s["cameras"]:
        raise ConfigError(
            f"config key data.camera: {d['camera']!r} is not among the synthetic cameras "
            f"{s['cameras']} (config key synthetic.cameras)"
        )
    for name, source in c["paths"]["sources"].items():
        if source["kind"] == "vlm" and not source["urls"] and not source["launch"]:
            raise ConfigError(
                f"config key paths.sources.{name}: a vlm source needs `urls` (running servers, "
                "one list per shard) or `launch` (a command with {port} and {gpu}); got neither"
            )
    return Config(
        paths=PathsConfig(
            journal_dir=Path(c["paths"]["journal_dir"]), sources=c["paths"]["sources"]
        ),
        data=DataConfig(
            root=Path(d["root"]),
            setting=d["setting"],
            camera=d["camera"],
            tasks=tuple(d["tasks"]),
            episodes=episodes,
            action=d["action"],
        ),
        synthetic=SyntheticConfig(
            enabled=s["enabled"],
            seed=s["seed"],
            width=s["width"],
            height=s["height"],
            step=float(s["step"]),
            cameras=tuple(s["cameras"]),
        ),
    )
