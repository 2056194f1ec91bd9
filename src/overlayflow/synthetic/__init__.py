"""Synthetic RoboTwin 2.0 episodes: the demo data and the tests' fixtures.

Each episode is a seeded table-top pick-and-place (`scenes`), done by a scripted arm
(`motion`, `robot`) under simple rules (`physics`), seen by RoboTwin's four cameras (`cameras`)
through a small renderer (`render`, `views`), and written in RoboTwin's exact layout (`writer`)::

    from overlayflow import synthetic
    synthetic.write_task(root, "place_block", 2, cameras=("head_camera",))

The same scenes run in closed loop in `sim.TableTopEnv`, RoboTwin's ``TASK_ENV`` interface, with
a scripted expert (`expert`); ``<task>_occluded`` and ``<task>_hidden`` add the designed
occlusions (`occluder`)::

    env = synthetic.TableTopEnv("place_block_occluded", 0, cameras=("head_camera",))
    while env.take_action_cnt < env.step_lim and not env.eval_success:
        env.take_action(policy(env.get_obs()))
"""

from overlayflow.synthetic.cameras import (
    ALL_CAMERAS,
    FIXED_CAMERAS,
    WRIST_CAMERAS,
    CameraRig,
    camera_view,
    intrinsics,
    look_at,
)
from overlayflow.synthetic.expert import Expert, run_expert
from overlayflow.synthetic.motion import Demonstration, demonstrate, trajectory
from overlayflow.synthetic.occluder import hidden_frames
from overlayflow.synthetic.render import Renderer, render, visibility
from overlayflow.synthetic.robot import (
    TIP_OFFSET,
    flange_pose,
    gripper_rotation,
    idle_pose,
    joint_angles,
    joint_vector,
)
from overlayflow.synthetic.scenes import COLOURS, HIDDEN, OCCLUDED, Scene, base_task, make_scene
from overlayflow.synthetic.sim import TableTopEnv, hidden_stretches
from overlayflow.synthetic.views import View, Viewer, episode_views
from overlayflow.synthetic.writer import write_episode, write_task

__all__ = [
    "ALL_CAMERAS",
    "COLOURS",
    "FIXED_CAMERAS",
    "HIDDEN",
    "OCCLUDED",
    "TIP_OFFSET",
    "WRIST_CAMERAS",
    "CameraRig",
    "Demonstration",
    "Expert",
    "Renderer",
    "Scene",
    "TableTopEnv",
    "View",
    "Viewer",
    "base_task",
    "camera_view",
    "demonstrate",
    "episode_views",
    "flange_pose",
    "gripper_rotation",
    "hidden_frames",
    "hidden_stretches",
    "idle_pose",
    "intrinsics",
    "joint_angles",
    "joint_vector",
    "look_at",
    "make_scene",
    "render",
    "run_expert",
    "trajectory",
    "visibility",
    "write_episode",
    "write_task",
]
