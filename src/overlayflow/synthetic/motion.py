"""The scripted demonstration: how the active arm picks the object up and sets it on the target.

The same primitives drive the closed-loop expert of the simulator (`expert`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from overlayflow.synthetic import physics
from overlayflow.synthetic.robot import HOME_TIP, flange_of, gripper_rotation
from overlayflow.synthetic.scenes import OBJECT_HALF, Scene


@dataclass(frozen=True)
class Demonstration:
    """One episode's motion, T frames: fingertip ``tips`` (T, 3), gripper openness ``grips`` (T,)
    (1 open … 0 closed), ``held`` (T,) bool while the object is carried, the gripper rotation
    ``rot`` (3, 3) (fixed for the episode) and the object's centre ``objects`` (T, 3)."""

    tips: np.ndarray
    grips: np.ndarray
    held: np.ndarray
    rot: np.ndarray
    objects: np.ndarray

    def __len__(self) -> int:
        return len(self.tips)

    @property
    def flanges(self) -> np.ndarray:
        """The recorded end pose positions (T, 3)."""
        return flange_of(self.tips, self.rot)

    def state(self, i: int) -> physics.State:
        """Frame ``i`` as a `physics.State`."""
        held, taken = bool(self.held[i]), bool(self.held[: i + 1].any())
        return physics.State(
            self.tips[i], float(self.grips[i]), self.rot, self.objects[i], held, taken
        )


class Primitive(NamedTuple):
    """One straight motion: the fingertip ``goal`` (3,), the gripper's openness on arrival, and
    the least number of frames it takes (a grasp or a release is a short wait, not a move)."""

    goal: np.ndarray
    openness: float
    hold: int


LIFT, HOVER = 0.16, 0.06  # metres above the object to approach from and to carry at
# The hidden variant's ready pose: the fingertip over the middle of its side's object places, at
# the approach height, about 0.21 m (11 frames at 0.02 m) from home: longer than a policy's chunk
# of actions, so the chunk chosen on the first frame cannot already head for the object.
READY_TIP = {
    "left": np.array([-0.16, 0.01, LIFT + OBJECT_HALF]),
    "right": np.array([0.16, 0.01, LIFT + OBJECT_HALF]),
}


def primitives(scene: Scene, obj: np.ndarray | None = None) -> list[Primitive]:
    """The pick-and-place as primitives, for the object's centre ``obj`` (3,) (default: where the
    scene puts it); the hidden variant's begin with the move to `READY_TIP` (`approach_index`)."""
    o = scene.object_start if obj is None else obj
    t = np.array([*scene.target_xy, 2 * OBJECT_HALF + 0.005])

    def up(dz: float) -> np.ndarray:
        return np.array([0.0, 0.0, dz])

    ready = [Primitive(READY_TIP[scene.arm], 1.0, 0)] if scene.hidden else []
    return [
        *ready,
        Primitive(o + up(LIFT), 1.0, 0),
        Primitive(o + up(0.005), 1.0, 0),
        Primitive(o + up(0.005), 0.0, 4),
        Primitive(o + up(LIFT), 0.0, 0),
        Primitive(t + up(LIFT), 0.0, 0),
        Primitive(t + up(HOVER - 0.05), 0.0, 0),
        Primitive(t + up(HOVER - 0.05), 1.0, 4),
        Primitive(t + up(LIFT), 1.0, 0),
        Primitive(HOME_TIP[scene.arm], 1.0, 0),
    ]


def approach_index(scene: Scene) -> int:
    """The index, in `primitives`, of the move to above the object (after the ready pose, if any)."""
    return int(scene.hidden)


def frames_to(goal: np.ndarray, start: np.ndarray, hold: int, step: float) -> int:
    """Frames a primitive from ``start`` to ``goal`` takes at ``step`` metres a frame."""
    return max(hold, int(np.ceil(np.linalg.norm(goal - start) / step)))


def trajectory(scene: Scene, step: float = 0.02) -> tuple[np.ndarray, np.ndarray]:
    """Fingertip positions (T, 3) and gripper openness (T,) of the episode.

    Motion primitives are straight lines sampled every ``step`` metres; like RoboTwin, every
    primitive also saves a frame at its start, so near-duplicate frames appear at the boundaries.
    """
    home = HOME_TIP[scene.arm]
    tips, grips = [home.copy()], [1.0]
    for goal, openness, hold in primitives(scene):
        start, g0 = tips[-1], grips[-1]
        tips.append(start.copy())
        grips.append(g0)
        n = frames_to(goal, start, hold, step)
        for k in range(1, n + 1):
            a = k / n
            tips.append(start + a * (goal - start))
            grips.append(g0 + a * (openness - g0))
    return np.array(tips), np.array(grips)


def demonstrate(scene: Scene, step: float = 0.02) -> Demonstration:
    """The scripted pick-and-place of ``scene``, a frame every ``step`` metres of fingertip travel;
    the object follows `physics`, as it does in the simulator."""
    tips, grips = trajectory(scene, step)
    rot = gripper_rotation(scene.yaw)
    state = physics.start(scene, tips[0], grips[0], rot)
    states = [state]
    for tip, openness in zip(tips[1:], grips[1:], strict=True):
        state = physics.advance(scene, state, tip, openness, rot)
        states.append(state)
    held = np.array([s.held for s in states])
    return Demonstration(tips, grips, held, rot, np.array([s.obj for s in states]))
