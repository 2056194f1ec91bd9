"""One frame as the cameras see it: the code the episode writer and the simulator share.

A frame is a `physics.State` (the active arm and the object) and its number; `Viewer.view` turns it
into one camera's K, [R|t], true-RGB picture and visible fractions. The writer JPEG-encodes these
pictures (`episode_views` yields them as the writer encodes them); the simulator hands them to the
policy. The arm that does not act rests at home and is not drawn, and the robot is drawn in the
fixed cameras only: a wrist camera sits behind its gripper's housing.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import NamedTuple

import numpy as np

from overlayflow.synthetic.cameras import (
    FIXED_CAMERAS,
    WRIST_CAMERAS,
    WRIST_FOVY_DEG,
    camera_view,
    check_cameras,
    intrinsics,
    wrist_extrinsic,
)
from overlayflow.synthetic.motion import Demonstration, demonstrate
from overlayflow.synthetic.occluder import occluded_at, panel
from overlayflow.synthetic.physics import State
from overlayflow.synthetic.render import Renderer
from overlayflow.synthetic.robot import flange_of, idle_pose, other_arm
from overlayflow.synthetic.scenes import Scene, make_scene


class View(NamedTuple):
    """One camera's frame: true RGB (H, W, 3) uint8, K (3, 3), world→camera [R|t] (3, 4), and the
    visible fractions of the ``"object"`` and the ``"target"`` (empty if not measured)."""

    rgb: np.ndarray
    k: np.ndarray
    rt: np.ndarray
    visible: dict[str, float]


class Viewer:
    """The cameras' views of one scene's frames at ``width`` × ``height``."""

    def __init__(self, scene: Scene, width: int, height: int, step: float = 0.02) -> None:
        self.scene, self.width, self.height, self.step = scene, width, height, step
        idle = other_arm(scene.arm)
        self._idle = {idle: idle_pose(idle)}
        self._panel = panel(scene) if scene.occluded else None
        self._renderers: dict[tuple[str, bool], Renderer] = {}
        self._still: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        self._wrist_k = intrinsics(width, height, WRIST_FOVY_DEG)

    def still(self, camera: str) -> bool:
        """Whether ``camera`` never moves: a fixed camera, or the parked arm's wrist camera."""
        return camera in FIXED_CAMERAS or WRIST_CAMERAS[camera] != self.scene.arm

    def camera(self, camera: str, state: State) -> tuple[np.ndarray, np.ndarray]:
        """K (3, 3) and [R|t] (3, 4) of ``camera`` at ``state`` (a wrist camera moves with it)."""
        if camera in self._still:
            return self._still[camera]
        if not self.still(camera):
            return self._wrist_k, wrist_extrinsic(flange_of(state.tip, state.rot), state.rot)
        poses = {**self._idle, self.scene.arm: (flange_of(state.tip, state.rot), state.rot)}
        k, rt = camera_view(camera, self.width, self.height, self.scene.camera_jitter, poses)
        self._still[camera] = k, rt
        return k, rt

    def view(self, camera: str, state: State, frame: int, measure: bool = True) -> View:
        """``camera``'s view of ``state`` at ``frame`` (the occluded variant's panel hangs in front
        of the head camera during `occluder.hidden_frames`); ``measure`` False leaves
        ``View.visible`` empty and draws faster."""
        if (camera, measure) not in self._renderers:
            check_cameras([camera])
            renderer = Renderer(self.scene, self.width, self.height, measure)
            self._renderers[camera, measure] = renderer
        k, rt = self.camera(camera, state)
        hidden = occluded_at(self.scene, frame, self.step, state.taken)
        picture = self._renderers[camera, measure].draw(
            k,
            rt,
            state.tip,
            state.openness,
            state.obj,
            state.rot,
            draw_robot=camera in FIXED_CAMERAS,
            occluder=self._panel if hidden else None,
        )
        return View(picture.rgb, k, rt, picture.visible)


def demonstration_views(
    scene: Scene, demo: Demonstration, camera: str, width: int, height: int, step: float
) -> Iterator[View]:
    """``camera``'s view of every frame of ``demo``, in order."""
    viewer = Viewer(scene, width, height, step)
    for i in range(len(demo)):
        yield viewer.view(camera, demo.state(i), i)


def episode_views(
    task: str,
    index: int,
    camera: str = "head_camera",
    *,
    seed: int = 0,
    width: int = 320,
    height: int = 240,
    step: float = 0.02,
) -> Iterator[View]:
    """The views of ``camera`` that `writer.write_episode` encodes for ``task``/``index`` with the
    same options: ``View.rgb`` is the true-RGB picture before JPEG encoding."""
    scene = make_scene(task, index, seed)
    yield from demonstration_views(scene, demonstrate(scene, step), camera, width, height, step)
