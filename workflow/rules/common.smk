import os
import re
import sys
from pathlib import Path

# The package comes from this checkout: Snakemake parses with it, and every job imports it
# through PYTHONPATH, also in a conda environment or container that does not install it.
SRC = str(Path(workflow.basedir) / "src")
sys.path.insert(0, SRC)
_PATHS = [
    p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p and p != SRC
]
os.environ.update(PYTHONPATH=os.pathsep.join([SRC, *_PATHS]))

from overlayflow.config import load

CFG = load(config, Path(workflow.basedir) / "config" / "schema.yaml")
EPISODES = CFG.episodes()
DATA_DIR = f"{CFG.data.root}/{{task}}/{CFG.data.setting}"
CONTAINERS = {name: image or None for name, image in CFG.containers.items()}


wildcard_constraints:
    task="[A-Za-z0-9_]+",
    episode=r"episode\d+",


def episode_indexes():
    """Index records of every configured episode."""
    return [
        f"results/episodes/{task}/{episode}.json"
        for task, names in EPISODES.items()
        for episode in names
    ]


wildcard_constraints:
    source="|".join(map(re.escape, CFG.paths.sources)),
    shard=r"\d+",


def n_shards(source):
    settings = CFG.paths.sources[source]
    return len(settings["urls"]) or settings["shards"]


def launched_gpus(source):
    """GPUs a shard job of ``source`` needs: one per server it launches (none for `urls`)."""
    settings = CFG.paths.sources[source]
    return 0 if settings["urls"] else settings["servers_per_shard"]


def path_files(source):
    """Per-episode path files of one source."""
    return [
        f"results/paths/{source}/{task}/{episode}.json"
        for task, names in EPISODES.items()
        for episode in names
    ]


def path_episode_inputs(wildcards):
    """An episode's index and, for a VLM source, the reports of the source's shards.

    Every shard, not only the one that asked this episode: which shard that is depends on the
    plan, and a checkpoint to find out would keep these jobs out of SLURM group jobs (Snakemake
    can submit a group before a checkpoint's dependants are ready). The shards run in parallel,
    so the episode jobs wait no longer in practice.
    """
    inputs = {"index": f"results/episodes/{wildcards.task}/{wildcards.episode}.json"}
    if CFG.paths.sources[wildcards.source]["kind"] == "vlm":
        inputs["shards"] = [
            f"results/paths/{wildcards.source}/shards/shard{i}.json"
            for i in range(n_shards(wildcards.source))
        ]
    return inputs


ORACLES = [name for name, s in CFG.paths.sources.items() if s["kind"] == "oracle"]


def oracle_files_for(source):
    """The oracle's path files, to measure a VLM source against (none for an oracle source)."""
    if CFG.paths.sources[source]["kind"] == "oracle" or not ORACLES:
        return []
    return path_files(ORACLES[0])


def path_summaries():
    return [f"results/paths/{source}/summary.csv" for source in CFG.paths.sources]


DATASETS = CFG.dataset_specs()


wildcard_constraints:
    dataset="|".join(DATASETS) or "$^",


def episode_keys():
    return [(task, episode) for task, names in EPISODES.items() for episode in names]


def dataset_inputs(wildcards):
    """Index, frames part and (unless rgb) path part of every episode, in the same order."""
    source, _ = DATASETS[wildcards.dataset]
    keys = episode_keys()
    inputs = {
        "indexes": [f"results/episodes/{t}/{e}.json" for t, e in keys],
        "frames": [f"results/frames/{t}/{e}.zarr" for t, e in keys],
    }
    if source is not None:
        inputs["paths"] = [f"results/overlays/{source}/{t}/{e}.zarr" for t, e in keys]
    return inputs


def dataset_provenance(name):
    """What a dataset is made from: only these settings, so other changes do not rebuild it."""
    source, layout = DATASETS[name]
    return {
        "dataset": name,
        "layout": layout,
        "data": config["data"],
        "overlay": config.get("overlay", {}),
        "source": {"name": source, **CFG.paths.sources[source]} if source else None,
    }


def dataset_stores():
    return [f"results/datasets/{name}.zarr" for name in DATASETS]


def preview_files():
    """GIF and contact sheet of the first `previews.episodes` episodes of each task and source."""
    return [
        f"results/previews/{source}/{task}/{episode}.{ext}"
        for source in CFG.datasets.sources
        for task, names in EPISODES.items()
        for episode in names[: CFG.previews.episodes]
        for ext in ("gif", "png")
    ]


EXPERIMENTS = CFG.experiments


wildcard_constraints:
    experiment="|".join(map(re.escape, EXPERIMENTS)) or "$^",


def experiment_store(wildcards):
    return f"results/datasets/{EXPERIMENTS[wildcards.experiment].dataset}.zarr"


def evaluations():
    return [f"results/eval/{name}.json" for name in EXPERIMENTS]


def experiment_records(names=None):
    """Layout, memory, source and seed of experiments, for the report's tables."""
    return {
        name: {
            "layout": e.layout,
            "memory": e.memory,
            "source": e.source,
            "seed": e.seed,
        }
        for name, e in EXPERIMENTS.items()
        if names is None or name in names
    }


def contrast_members(kind):
    """Experiments that have a partner differing only in memory (kind "memory") or in having a
    path (kind "path": a path layout and the rgb experiment of the same memory and seed).
    """
    es = EXPERIMENTS.values()
    if kind == "memory":
        key = lambda e: (e.layout, e.source, e.seed)
        modes = {}
        for e in es:
            modes.setdefault(key(e), set()).add(e.memory)
        return sorted(e.name for e in es if len(modes[key(e)]) == 2)
    rgb = {(e.memory, e.seed) for e in es if e.layout == "rgb"}
    paths = {(e.memory, e.seed) for e in es if e.layout != "rgb"}
    return sorted(e.name for e in es if (e.memory, e.seed) in rgb & paths)


def evaluation_files(names):
    return {name: f"results/eval/{name}.json" for name in names}


def report_files():
    files = [
        f"results/quality/{source}/quality.png"
        for source, settings in CFG.paths.sources.items()
        if settings["kind"] == "vlm" and ORACLES
    ]
    files += [f"results/report/training/{name}.png" for name in EXPERIMENTS]
    if EXPERIMENTS:
        files += ["results/report/evaluation.csv", "results/report/evaluation.html"]
    files += [
        f"results/report/compare_{kind}.csv"
        for kind in ("memory", "path")
        if contrast_members(kind)
    ]
    return files
