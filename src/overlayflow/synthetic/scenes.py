"""Seeded table-top scenes: which object goes where, in which colour, said how.

Each scene is a pick-and-place: a coloured object named in the instruction ("pick up the red block
and place it on the blue pad") and a target pad, on a table at z = 0. The arm that does it is the
left one when the object is at x < 0, as in RoboTwin's beat_block_hammer. The same (task, episode,
seed) always gives the same scene. A task name ending in ``_occluded`` (``place_block_occluded``) is
its base task's scenes with the designed occlusion of `occluder`: same layouts, nouns and
instructions, and a panel that hides the object from the head camera during the approach. One
ending in ``_hidden`` (``place_block_hidden``) covers every place an object can start from, the
same for every scene, from the third frame until the object is taken, and the arm first moves to a
ready pose that is the same for every scene of its side, so that neither the pictures nor the
arm's own state say where the object is under the cover: only the first frames (the memory) or a
path drawn on them do.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

import numpy as np

# Named object colours, true RGB. Red and blue are both present so that a red/blue channel swap
# anywhere in the pipeline moves the objects a server finds.
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (210, 35, 35),
    "green": (40, 170, 60),
    "blue": (35, 60, 215),
    "yellow": (225, 205, 40),
}

# Object nouns per task name; a task not listed is a block placed on a pad.
NOUNS: dict[str, tuple[str, str]] = {
    "place_block": ("block", "pad"),
    "place_can": ("can", "plate"),
    "stack_cube": ("cube", "tray"),
}
DEFAULT_NOUNS = ("block", "pad")
OCCLUDED = "_occluded"  # task-name suffix of a task's occluded variant
HIDDEN = "_hidden"  # task-name suffix of its hidden variant (ready pose, cover until taken)

OBJECT_HALF = 0.025  # half the object's edge, metres
TARGET_HALF = 0.055  # half the target pad's edge
TARGET_THICKNESS = 0.002  # the pad's height above the table


@dataclass(frozen=True)
class Scene:
    """What one episode shows (all positions in metres, world frame, z up)."""

    arm: str
    obj_colour: str
    target_colour: str
    nouns: tuple[str, str]
    obj_xy: np.ndarray
    target_xy: np.ndarray
    yaw: float
    camera_jitter: np.ndarray
    occluded: bool = False  # the occluded variant's panel hides the object during the approach
    hidden: bool = False  # the hidden variant: a ready pose first, the cover until taken

    @property
    def object_start(self) -> np.ndarray:
        """Centre (3,) of the object where it rests at the start."""
        return np.array([*self.obj_xy, OBJECT_HALF])

    @property
    def target_centre(self) -> np.ndarray:
        """Centre (3,) of the target pad."""
        return np.array([*self.target_xy, TARGET_THICKNESS])

    @property
    def instructions(self) -> dict[str, list[str]]:
        """RoboTwin's instruction file: ``{"seen": [...], "unseen": [...]}``."""
        o, t = f"{self.obj_colour} {self.nouns[0]}", f"{self.target_colour} {self.nouns[1]}"
        return {
            "seen": [
                f"pick up the {o} and place it on the {t}",
                f"put the {o} onto the {t}",
                f"move the {o} to the {t}",
            ],
            "unseen": [f"grab the {o} and set it down on the {t}"],
        }


def base_task(task: str) -> tuple[str, str]:
    """(the base task, the variant's suffix or ""): ``place_block_occluded`` →
    (``place_block``, ``"_occluded"``), ``place_block`` → (``place_block``, ``""``)."""
    for suffix in (OCCLUDED, HIDDEN):
        base = task.removesuffix(suffix)
        if base != task and base:
            return base, suffix
    return task, ""


def make_scene(task: str, index: int, seed: int = 0) -> Scene:
    """Draw the scene of ``task``/episode ``index`` from a seed; the same arguments give the same scene.

    A variant draws its base task's scene (the same layout for the same index and seed).
    """
    task, variant = base_task(task)
    rng = np.random.default_rng([seed, zlib.crc32(task.encode()), index])
    obj_colour, target_colour = rng.choice(list(COLOURS), size=2, replace=False)
    obj_xy = np.array([rng.uniform(0.08, 0.24) * rng.choice([-1.0, 1.0]), rng.uniform(-0.08, 0.1)])
    arm = "left" if obj_xy[0] < 0 else "right"
    side = -1.0 if arm == "left" else 1.0
    target_xy = np.array([side * rng.uniform(0.0, 0.12), rng.uniform(0.1, 0.18)])
    return Scene(
        arm=arm,
        obj_colour=str(obj_colour),
        target_colour=str(target_colour),
        nouns=NOUNS.get(task, DEFAULT_NOUNS),
        obj_xy=obj_xy,
        target_xy=target_xy,
        yaw=float(rng.uniform(-0.5, 0.5)),
        camera_jitter=rng.normal(0.0, 0.005, size=3),
        occluded=bool(variant),
        hidden=variant == HIDDEN,
    )
