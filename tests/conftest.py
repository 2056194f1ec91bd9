"""Fixture factories: tiny synthetic RoboTwin episodes written on demand."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from overlayflow import synthetic
from overlayflow.episodes import EpisodeRef

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def demo_root(tmp_path_factory) -> Path:
    """Two 320×240 episodes of ``place_block`` with all four cameras (shared, read-only)."""
    root = tmp_path_factory.mktemp("robotwin")
    synthetic.write_task(root, "place_block", 2, setting="demo_clean", seed=0)
    return root


@pytest.fixture
def make_episodes(tmp_path):
    """Write ``n`` fresh episodes of ``task`` under a private root; returns their EpisodeRefs."""

    def make(task: str = "place_block", n: int = 1, setting: str = "demo_clean", **kwargs):
        kwargs.setdefault("cameras", ("head_camera",))
        kwargs.setdefault("step", 0.05)
        synthetic.write_task(tmp_path, task, n, setting=setting, **kwargs)
        return [EpisodeRef(tmp_path, task, setting, i) for i in range(n)]

    return make


def snakemake_cmd() -> list[str]:
    exe = shutil.which("snakemake", path=os.path.dirname(sys.executable)) or "snakemake"
    return [exe, "-s", str(REPO / "Snakefile")]


def run_snakemake(workdir: Path, *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    """Run the workflow in ``workdir`` with the venv's tools first on PATH."""
    env = dict(os.environ)
    env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", "")
    return subprocess.run(
        [*snakemake_cmd(), "--directory", str(workdir), *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
    )


def build_store(
    root: Path,
    layout: str = "overlay",
    tasks: tuple[str, ...] = ("place_block",),
    episodes: int = 2,
    size: tuple[int, int] = (32, 32),
    every: int = 1,
    step: float = 0.05,
) -> Path:
    """A real dataset store: synthetic episodes → index → oracle paths → parts → consolidation."""
    from overlayflow.episodes import write_index
    from overlayflow.overlay import Style
    from overlayflow.render import render_frames, render_paths
    from overlayflow.sources import oracle_records, write_episode_paths
    from overlayflow.store import EpisodeInput, consolidate

    data = root / "data"
    inputs = []
    for k, task in enumerate(tasks):
        synthetic.write_task(
            data, task, episodes, setting="s", seed=k, cameras=("head_camera",), step=step
        )
        for i in range(episodes):
            ref = EpisodeRef(data, task, "s", i)
            index_file = root / "episodes" / task / f"{ref.name}.json"
            index = write_index(data, task, "s", ref.name, "head_camera", "next", index_file)
            records, _ = oracle_records(ref, "head_camera", every, (0.12, 0, 0), 0.004)
            paths_file = root / "paths" / task / f"{ref.name}.json"
            write_episode_paths(paths_file, "oracle", "oracle", index, records, every)
            frames = root / "frames" / task / f"{ref.name}.zarr"
            overlays = root / "overlays" / task / f"{ref.name}.zarr"
            render_frames(index_file, frames, size)
            render_paths(index_file, paths_file, overlays, size, Style())
            inputs.append(EpisodeInput(index_file, frames, None if layout == "rgb" else overlays))
    out = root / f"oracle-{layout}.zarr"
    consolidate(out, inputs, layout=layout, source="oracle")
    return out
