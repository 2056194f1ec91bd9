"""Synthetic episodes on disk, in RoboTwin's layouts: the demo data and the tests' fixtures.

Files are written in RoboTwin's exact layout and dtypes (see ``overlayflow.robotwin.episodes``),
stable_2.0's (reference/robotwin2.md, the default) or XPolicyLab v1.0's (reference/robotwin_v1.md),
including the colour-order quirk: the true-RGB render goes straight into ``cv2.imencode``, which
assumes BGR. The same scene written in both layouts holds the same demonstration: v1.0 keeps the
first T − 1 frames and pairs each state with the next one as its action, as RoboTwin does. Ground
truth that RoboTwin does not store (object positions, per-frame visibility, keyed by stable_2.0
camera names) goes to ``<task dir>/truth/episode{i}.json``, outside RoboTwin's layout. The frames
are `views`' (`views.episode_views` yields them before encoding), the ones the simulator shows;
an occluded or hidden variant's task (``place_block_occluded``, ``place_block_hidden``) is
written the same way, its panel in view.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import cv2
import h5py
import numpy as np

from overlayflow import files
from overlayflow.robotwin.episodes import ARMS, CAMERA_MAP, LAYOUTS, STABLE_2, V1, EpisodeRef
from overlayflow.robotwin.geometry import matrix_to_quat_wxyz
from overlayflow.synthetic.cameras import ALL_CAMERAS, check_cameras, cv_to_gl_cam2world
from overlayflow.synthetic.motion import Demonstration, demonstrate
from overlayflow.synthetic.robot import (
    IDLE_JOINTS,
    TIP_OFFSET,
    idle_pose,
    joint_angles,
    other_arm,
)
from overlayflow.synthetic.scenes import Scene, make_scene
from overlayflow.synthetic.views import demonstration_views


@dataclass
class _CameraFrames:
    """One camera's recording: JPEGs, K and [R|t] per frame, visible fractions per object."""

    jpegs: list[bytes] = field(default_factory=list)
    ks: list[np.ndarray] = field(default_factory=list)
    rts: list[np.ndarray] = field(default_factory=list)
    visible: dict[str, list[float]] = field(default_factory=lambda: {"object": [], "target": []})


class _ArmTrack(NamedTuple):
    """One arm's recording: end pose (T, 7), joint angles (T, J), gripper openness (T,)."""

    endpose: np.ndarray
    joints: np.ndarray
    gripper: np.ndarray


def _record_camera(
    camera: str, scene: Scene, demo: Demonstration, width: int, height: int, step: float
) -> _CameraFrames:
    frames = _CameraFrames()
    for i, view in enumerate(demonstration_views(scene, demo, camera, width, height, step)):
        for name, fraction in view.visible.items():
            frames.visible[name].append(fraction)
        # RoboTwin passes its RGB array to cv2.imencode, which takes it for BGR; so do we.
        ok, buf = cv2.imencode(".jpg", view.rgb)
        if not ok:
            raise RuntimeError(f"JPEG encoding failed for {camera} frame {i}")
        frames.jpegs.append(buf.tobytes())
        frames.ks.append(view.k)
        frames.rts.append(view.rt)
    return frames


def _with_joints(joints: np.ndarray, arm_joints: int) -> np.ndarray:
    """Six stand-in joint angles (T, 6) widened to ``arm_joints`` (a 7-joint arm's last joint
    holds a small offset of the first)."""
    extra = [0.1 + 0.5 * joints[:, :1] for _ in range(arm_joints - joints.shape[1])]
    return np.concatenate([joints, *extra], axis=1)


def _arm_tracks(scene: Scene, demo: Demonstration, arm_joints: int = 6) -> dict[str, _ArmTrack]:
    """The active arm follows the demonstration; the other rests at home, gripper open."""
    n = len(demo)
    idle = other_arm(scene.arm)
    idle_flange, idle_rot = idle_pose(idle)
    flanges = demo.flanges
    return {
        scene.arm: _ArmTrack(
            endpose=np.concatenate(
                [flanges, np.tile(matrix_to_quat_wxyz(demo.rot), (n, 1))], axis=1
            ),
            joints=_with_joints(
                np.stack([joint_angles(f, scene.yaw, scene.arm) for f in flanges]), arm_joints
            ),
            gripper=demo.grips.astype(np.float64),
        ),
        idle: _ArmTrack(
            endpose=np.tile(np.concatenate([idle_flange, matrix_to_quat_wxyz(idle_rot)]), (n, 1)),
            joints=_with_joints(np.tile(IDLE_JOINTS, (n, 1)), arm_joints),
            gripper=np.ones(n),
        ),
    }


def _pad_jpegs(frames: list[bytes]) -> np.ndarray:
    # numpy's fixed-length bytes dtype pads every frame with NULs to the longest one, as RoboTwin does.
    return np.array(frames, dtype=f"S{max(len(f) for f in frames)}")


def _write_hdf5(path: Path, cameras: dict[str, _CameraFrames], arms: dict[str, _ArmTrack]) -> None:
    with files.atomic_output(path) as tmp, h5py.File(tmp, "w") as f:
        for camera, frames in cameras.items():
            g = f.create_group(f"observation/{camera}")
            g.create_dataset("rgb", data=_pad_jpegs(frames.jpegs))
            g.create_dataset("intrinsic_cv", data=np.array(frames.ks))
            g.create_dataset("extrinsic_cv", data=np.array(frames.rts))
            gl = [cv_to_gl_cam2world(rt) for rt in frames.rts]
            g.create_dataset("cam2world_gl", data=np.array(gl))
        for side in ARMS:
            f.create_dataset(f"joint_action/{side}_arm", data=arms[side].joints)
            f.create_dataset(f"joint_action/{side}_gripper", data=arms[side].gripper)
            f.create_dataset(f"endpose/{side}_endpose", data=arms[side].endpose)
            f.create_dataset(f"endpose/{side}_gripper", data=arms[side].gripper)
        # (T, 14): left arm joints, left gripper, right arm joints, right gripper.
        vector = np.column_stack(
            [a for side in ARMS for a in (arms[side].joints, arms[side].gripper)]
        )
        f.create_dataset("joint_action/vector", data=vector)
        f.create_dataset("pointcloud", data=np.zeros((len(vector), 0)))


def _write_v1_hdf5(
    path: Path,
    cameras: dict[str, _CameraFrames],
    arms: dict[str, _ArmTrack],
    instructions: list[str],
    height: int,
    width: int,
) -> None:
    """XPolicyLab v1.0 (RoboTwin's ``create_xpolicylab_hdf5``): states 0 … T − 2 under ``state/``,
    their next states under ``action/``, the last frame's images dropped."""
    n = len(arms[ARMS[0]].joints) - 1
    with files.atomic_output(path) as tmp, h5py.File(tmp, "w") as f:
        f.attrs["source_format"] = "RoboTwin"
        f.attrs["source_path"] = "native_collection"
        f.create_dataset("data_format_version", data=V1, dtype=h5py.string_dtype("utf-8"))
        text = json.dumps(instructions)
        f.create_dataset("instructions", data=text, dtype=h5py.string_dtype("utf-8"))
        f.create_dataset("additional_info/frequency", data=np.int32(15))
        for group, frames in (("state", slice(0, n)), ("action", slice(1, n + 1))):
            for side in ARMS:
                track = arms[side]
                f.create_dataset(f"{group}/{side}_arm_joint_states", data=track.joints[frames])
                grip = track.gripper[frames, None]
                f.create_dataset(f"{group}/{side}_ee_joint_states", data=grip)
                f.create_dataset(f"{group}/{side}_ee_poses", data=track.endpose[frames])
        for camera, recorded in cameras.items():
            g = f.create_group(f"vision/{CAMERA_MAP[camera]}")
            g.create_dataset("colors", data=_pad_jpegs(recorded.jpegs[:n]))
            g.create_dataset("shape", data=np.array([height, width, 3], np.int32))
            g.create_dataset("intrinsic_matrix", data=np.array(recorded.ks[:n]))
            gl = [cv_to_gl_cam2world(rt) for rt in recorded.rts[:n]]
            g.create_dataset("extrinsics_matrix", data=np.array(gl, np.float32))


def _truth(ref: EpisodeRef, seed: int, scene: Scene, demo: Demonstration, visible: dict) -> dict:
    return {
        "task": ref.task,
        "episode": ref.name,
        "seed": seed,
        "arm": scene.arm,
        "tip_offset": TIP_OFFSET,
        "object": {
            "colour": scene.obj_colour,
            "noun": scene.nouns[0],
            "start": scene.object_start.tolist(),
        },
        "target": {"colour": scene.target_colour, "noun": scene.nouns[1]},
        "target_xyz": scene.target_centre.tolist(),
        "tips": demo.tips.round(6).tolist(),
        "visible": visible,
    }


def write_episode(
    root: str | Path,
    task: str,
    index: int,
    *,
    setting: str = "demo_clean",
    seed: int = 0,
    width: int = 320,
    height: int = 240,
    cameras: tuple[str, ...] = ALL_CAMERAS,
    step: float = 0.02,
    layout: str = STABLE_2,
    embodiment: str = "aloha_agilex",
    arm_joints: int = 6,
) -> Path:
    """Write one episode's HDF5, instruction and truth files; returns the HDF5 path.

    ``layout`` stable_2.0: ``<root>/<task>/<setting>/data/episode{index}.hdf5``; v1.0:
    ``<root>/<setting>/<task>/<embodiment>/data/episode_{index:07d}.hdf5``. Images are ``width`` ×
    ``height``, one per camera of ``cameras`` and frame; the fingertip moves ``step`` metres between
    frames; each arm has ``arm_joints`` joints (6 or 7). The task's ``scene_info.json`` is
    `write_task`'s.
    """
    check_cameras(cameras)
    ref = _ref(root, task, setting, index, layout, embodiment)
    if arm_joints not in (6, 7):
        raise ValueError(f"arm_joints must be 6 or 7; got {arm_joints!r}")
    scene = make_scene(task, index, seed)
    demo = demonstrate(scene, step)
    recorded = {c: _record_camera(c, scene, demo, width, height, step) for c in cameras}
    arms = _arm_tracks(scene, demo, arm_joints)
    if layout == STABLE_2:
        _write_hdf5(ref.hdf5, recorded, arms)
        files.write_json(ref.instructions, scene.instructions, indent=1)
    else:
        _write_v1_hdf5(ref.hdf5, recorded, arms, scene.instructions["seen"], height, width)
        sidecar = {**scene.instructions, "episode_index": index}
        files.write_json(ref.instructions, sidecar, indent=1)
    visible = {camera: frames.visible for camera, frames in recorded.items()}
    truth = _truth(ref, seed, scene, demo, visible)
    files.write_json(ref.task_dir / "truth" / f"{ref.name}.json", truth, indent=1)
    return ref.hdf5


def _ref(
    root: str | Path, task: str, setting: str, index: int, layout: str, embodiment: str
) -> EpisodeRef:
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {LAYOUTS}; got {layout!r}")
    if layout == STABLE_2:
        return EpisodeRef(Path(root), task, setting, index)
    return EpisodeRef(Path(root), task, setting, index, embodiment, padded=True)


def _scene_info_entry(scene: Scene) -> dict:
    return {
        "info": {
            "{A}": f"{scene.obj_colour}_{scene.nouns[0]}/base0",
            "{B}": f"{scene.target_colour}_{scene.nouns[1]}/base0",
            "{a}": scene.arm,
        }
    }


def write_task(
    root: str | Path,
    task: str,
    episodes: int | list[int],
    *,
    setting: str = "demo_clean",
    seed: int = 0,
    layout: str = STABLE_2,
    embodiment: str = "aloha_agilex",
    **options: Any,
) -> list[Path]:
    """Write several episodes of one task (``episodes``: a count, or explicit indices) in
    ``layout``; returns their HDF5 paths. ``options`` are `write_episode`'s: ``width``,
    ``height``, ``cameras``, ``step``, ``arm_joints``.

    Also writes the task's ``scene_info.json``, merged with the entries already there.
    """
    indices = list(range(episodes) if isinstance(episodes, int) else episodes)
    where = {"setting": setting, "seed": seed, "layout": layout, "embodiment": embodiment}
    paths = [write_episode(root, task, i, **where, **options) for i in indices]
    info_path = _ref(root, task, setting, 0, layout, embodiment).scene_info
    info = json.loads(info_path.read_text()) if info_path.exists() else {}
    for i in indices:
        info[f"episode_{i}"] = _scene_info_entry(make_scene(task, i, seed))
    ordered = dict(sorted(info.items(), key=lambda kv: int(kv[0].split("_")[1])))
    files.write_json(info_path, ordered, indent=1)
    return paths
