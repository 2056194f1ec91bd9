"""Where RoboTwin episodes are: both tree shapes, both file namings, and the short names.

    <root>/<task>/<setting>/data/episode{i}.hdf5                           stable_2.0 tree
    <root>/<setting>/<task>/<embodiment>/data/episode_{i:07d}.hdf5          v1.0 tree

Either tree holds either file naming; episodes are always named ``episode{i}`` here (the workflow
wildcard) and :attr:`EpisodeRef.hdf5` resolves the real file.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from overlayflow.schema import ConfigError

# The workflow's episode name, and the two file namings (stable_2.0's and v1.0's).
EPISODE_RE = re.compile(r"episode(\d+)")
FILE_PATTERNS = {
    "episode{i}.hdf5": re.compile(r"episode(\d+)"),
    "episode_{i:07d}.hdf5": re.compile(r"episode_(\d{7})"),
}


class EpisodeError(Exception):
    """A RoboTwin episode that cannot be read as expected; the message says which file and key."""


@dataclass(frozen=True)
class EpisodeRef:
    """Where one episode's files are.

    ``embodiment`` set: the v1.0 tree ``<root>/<setting>/<task>/<embodiment>``, else stable_2.0's
    ``<root>/<task>/<setting>``; ``padded``: files named ``episode_{i:07d}`` instead of ``episode{i}``.
    """

    root: Path
    task: str
    setting: str
    index: int
    embodiment: str | None = None
    padded: bool = False

    @property
    def name(self) -> str:
        """The workflow's name for the episode, ``episode{i}``, whatever the file is called."""
        return f"episode{self.index}"

    @property
    def stem(self) -> str:
        """The file name without suffix."""
        return f"episode_{self.index:07d}" if self.padded else self.name

    @property
    def task_dir(self) -> Path:
        if self.embodiment is None:
            return self.root / self.task / self.setting
        return self.root / self.setting / self.task / self.embodiment

    @property
    def hdf5(self) -> Path:
        return self.task_dir / "data" / f"{self.stem}.hdf5"

    @property
    def instructions(self) -> Path:
        """The instructions sidecar: ``instructions/episode{i}.json`` (stable_2.0) or
        ``instruction/episode_{i:07d}.json`` (v1.0), whichever of the two exists (this naming's
        first); this naming's when neither does."""
        folders = (
            ("instruction", "instructions") if self.padded else ("instructions", "instruction")
        )
        stems = dict.fromkeys((self.stem, self.name))
        candidates = [self.task_dir / f / f"{stem}.json" for f in folders for stem in stems]
        return next((c for c in candidates if c.is_file()), candidates[0])

    @property
    def scene_info(self) -> Path:
        return self.task_dir / "scene_info.json"

    @classmethod
    def from_file(cls, root: str | Path, task: str, setting: str, hdf5: str | Path) -> EpisodeRef:
        """The ref of an episode file found under ``root`` (its tree shape and naming read from
        the path)."""
        root, hdf5 = Path(root), Path(hdf5)
        index, padded = file_index(hdf5)
        task_dir = hdf5.parent.parent
        if task_dir == root / task / setting:
            return cls(root, task, setting, index, None, padded)
        if task_dir.parent == root / setting / task:
            return cls(root, task, setting, index, task_dir.name, padded)
        raise EpisodeError(
            f"{hdf5} is in neither tree shape under {root}: expected "
            f"{root / task / setting}/data/ or {root / setting / task}/<embodiment>/data/"
        )


def episode_index(name: str) -> int:
    """``"episode7"`` → 7; anything else is an error naming what was expected."""
    match = EPISODE_RE.fullmatch(name)
    if not match:
        raise EpisodeError(
            f"episode name {name!r} is not of the form 'episode<i>' (e.g. 'episode7')"
        )
    return int(match.group(1))


def file_index(path: str | Path) -> tuple[int, bool]:
    """(index, padded) of an episode file name in either naming; anything else is an error naming
    the file and the namings expected."""
    stem = Path(path).stem
    for padded, pattern in enumerate(FILE_PATTERNS.values()):
        if match := pattern.fullmatch(stem):
            return int(match.group(1)), bool(padded)
    raise EpisodeError(
        f"{path}: file name not recognised as an episode; expected {list(FILE_PATTERNS)}"
    )


def _subdirs(path: Path) -> list[str]:
    return sorted(p.name for p in path.iterdir() if p.is_dir()) if path.is_dir() else []


def _data_dirs(root: Path, task: str, setting: str, embodiment: str | None) -> Path:
    """The ``data`` folder of ``task``/``setting`` under ``root``, in either tree shape."""
    old, new = root / task / setting, root / setting / task
    if embodiment is None and old.is_dir():
        return old / "data"
    if new.is_dir():
        embodiments = [e for e in _subdirs(new) if (new / e / "data").is_dir()]
        if embodiment is not None:
            if embodiment not in embodiments:
                raise EpisodeError(
                    f"embodiment {embodiment!r} not found under {new}; embodiments there with "
                    f"a data/ folder: {embodiments}"
                )
            return new / embodiment / "data"
        if len(embodiments) == 1:
            return new / embodiments[0] / "data"
        raise EpisodeError(
            f"{new} holds {len(embodiments)} embodiments with a data/ folder ({embodiments}); "
            "expected exactly one (or name one)"
        )
    if (root / task).is_dir():
        raise EpisodeError(
            f"{old / 'data'} does not exist: setting {setting!r} not found for task {task!r} "
            f"(config key data.setting); settings there: {_subdirs(root / task)}"
        )
    tasks = sorted({*_subdirs(root), *_subdirs(root / setting)} - {setting})
    raise EpisodeError(
        f"task {task!r} not found under {root} (looked for {old} and {new}/<embodiment>); "
        f"tasks there: {tasks}"
    )


def find_episodes(
    root: str | Path, task: str, setting: str, embodiment: str | None = None
) -> list[EpisodeRef]:
    """All episodes of ``task`` in index order, in either tree shape and file naming.

    ``embodiment`` picks the v1.0 tree's embodiment folder; by default the only one there is.
    """
    root = Path(root)
    if not root.is_dir():
        raise EpisodeError(f"data root {root} does not exist (config key data.root)")
    data = _data_dirs(root, task, setting, embodiment)
    if not data.is_dir():
        raise EpisodeError(f"{data} does not exist (expected the episode files there)")
    files = sorted(data.glob("*.hdf5"))
    unknown = [
        p.name for p in files if not any(r.fullmatch(p.stem) for r in FILE_PATTERNS.values())
    ]
    if unknown:
        raise EpisodeError(
            f"{data}: file name(s) {unknown} match neither episode naming; expected "
            f"{list(FILE_PATTERNS)}; files there: {[p.name for p in files]}"
        )
    refs = sorted(
        (EpisodeRef.from_file(root, task, setting, p) for p in files), key=lambda r: r.index
    )
    twins = sorted({r.index for r in refs if sum(s.index == r.index for s in refs) > 1})
    if twins:
        raise EpisodeError(
            f"{data}: episode(s) {twins} exist in both namings; expected one file each"
        )
    return refs


def resolve_episode(
    root: str | Path, task: str, setting: str, name: str, embodiment: str | None = None
) -> EpisodeRef:
    """The ref of the episode the workflow calls ``name`` (``episode7``), whichever its file's
    naming; only that episode's two possible files are looked at."""
    index = episode_index(name)
    root = Path(root)
    if not root.is_dir():
        raise EpisodeError(f"data root {root} does not exist (config key data.root)")
    data = _data_dirs(root, task, setting, embodiment)
    names = [f"{stem}.hdf5" for stem in (f"episode{index}", f"episode_{index:07d}")]
    found = [data / n for n in names if (data / n).is_file()]
    if len(found) != 1:
        what = "neither exists" if not found else "both exist; expected one"
        raise EpisodeError(f"episode file {data}/{names[0]} or {names[1]}: {what}")
    return EpisodeRef.from_file(root, task, setting, found[0])


def all_episode_names(
    root: str | Path, tasks: Sequence[str], setting: str, embodiment: str | None
) -> dict[str, list[str]]:
    """``data.episodes: all``: the names of every episode found of each task, in index order;
    `ConfigError` naming the key when a task has none or its folder cannot be read."""
    found = {}
    for task in tasks:
        try:
            found[task] = [ref.name for ref in find_episodes(root, task, setting, embodiment)]
        except EpisodeError as err:
            raise ConfigError(f"config key data.episodes is 'all', but {err}") from err
        if not found[task]:
            raise ConfigError(
                f"config key data.episodes is 'all', but no episode of task {task!r} was "
                f"found under {root} (episode{{i}}.hdf5 or episode_{{i:07d}}.hdf5)"
            )
    return found
