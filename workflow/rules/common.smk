from pathlib import Path

from overlayflow.config import load

CFG = load(config, Path(workflow.basedir) / "config" / "schema.yaml")
EPISODES = CFG.episodes()
DATA_DIR = f"{CFG.data.root}/{{task}}/{CFG.data.setting}"


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
