"""The designed occlusion: a panel that passes in front of the head camera during the approach.

In a task's occluded variant (``place_block_occluded``, see `scenes.base_task`) a dark panel hangs
on the head camera's line of sight to the object, close to the camera (above the arm's working
height), from frame ``FIRST_HIDDEN`` for as many frames as the fingertip needs to travel
``HIDDEN_TRAVEL`` metres at the episode's step: the head camera sees the object in the first
frames, then not, until the arm is nearly there (before the grasp: at the default step of 0.02 m,
frames 2–13 of about 90), so where to go must be remembered. Its time is counted in frames, the
same in a written episode (frame i) and in the simulator (after i actions).

That panel hangs where the object is, so its place in the picture says where to go. The hidden
variant's (``place_block_hidden``) does not: a cover over every place an object can start from,
the same for every scene, just above the objects' height, from frame ``FIRST_HIDDEN`` until the
object is taken (then it is lifted away, and the pad is in full view for the carry).

Both are of a colour far from every named colour, so a model that finds objects by colour (the stand-in
VLM) finds nothing while it hangs there.
"""

from __future__ import annotations

import numpy as np

from overlayflow.synthetic.cameras import FIXED_CAMERAS, look_at
from overlayflow.synthetic.scenes import Scene

OCCLUDER = (70, 78, 88)  # true RGB: a dark slate panel
FIRST_HIDDEN = 2  # frames 0 and 1 show the object
HIDDEN_TRAVEL = 0.24  # metres of fingertip travel (at the episode's step) the panel stays
PANEL_DISTANCE = 0.2  # metres from the head camera's eye, along its ray to the object
PANEL_HALF = 0.025  # half the panel's edge: it hides about ±0.09 m around the object
# The hidden variant's cover (x, y extents and height, metres): objects start at |x| 0.08-0.24,
# y -0.08-0.10 (`scenes.make_scene`), up to 0.035 m more at a corner, and are 0.05 m tall; the
# margins keep the head camera from seeing any of them under the cover's edges.
COVER_X, COVER_Y, COVER_Z = 0.33, (-0.2, 0.15), 0.055


def hidden_frames(step: float) -> range:
    """The frames during which the panel hangs in front of the head camera, at ``step`` metres of
    fingertip travel a frame."""
    return range(FIRST_HIDDEN, FIRST_HIDDEN + max(1, round(HIDDEN_TRAVEL / step)))


def occluded_at(scene: Scene, frame: int, step: float, taken: bool = False) -> bool:
    """Whether the panel hangs at ``frame`` of ``scene`` (never, unless the scene is an occluded or
    hidden variant's); ``taken`` says whether the object has been taken (the hidden variant's cover
    is lifted then)."""
    if scene.hidden:
        return frame >= FIRST_HIDDEN and not taken
    return scene.occluded and frame in hidden_frames(step)


def panel(scene: Scene) -> np.ndarray:
    """The panel's corners (4, 3): a square parallel to the head camera's image plane (upright in
    its picture), centred on its ray to the object's starting place; the hidden variant's cover
    (the same for every scene)."""
    if scene.hidden:
        (y0, y1), x = COVER_Y, COVER_X
        return np.array([[-x, y0, COVER_Z], [-x, y1, COVER_Z], [x, y1, COVER_Z], [x, y0, COVER_Z]])
    rig = FIXED_CAMERAS["head_camera"]
    eye = np.asarray(rig.eye) + scene.camera_jitter
    u, v = look_at(eye, np.asarray(rig.target))[:2, :3]
    ray = scene.object_start - eye
    centre = eye + ray * (PANEL_DISTANCE / np.linalg.norm(ray))
    signs = ((-1, -1), (-1, 1), (1, 1), (1, -1))
    return np.array([centre + PANEL_HALF * (a * u + b * v) for a, b in signs])
