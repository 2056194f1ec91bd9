"""The table-top simulator: consistent with the written episodes, solvable, not solvable blind,
and its occluded and hidden variants hide the object where they are designed to."""

import json

import cv2
import numpy as np
import pytest
import zarr

from overlayflow import synthetic, testing
from overlayflow.paths.standin_model import answer_for
from overlayflow.robotwin.episodes import Episode, EpisodeRef
from overlayflow.robotwin.index import index_episode
from overlayflow.synthetic import physics
from overlayflow.synthetic.motion import READY_TIP, approach_index, frames_to
from overlayflow.synthetic.occluder import FIRST_HIDDEN, OCCLUDER, hidden_frames, panel
from overlayflow.synthetic.robot import flange_pose, joint_angles
from overlayflow.synthetic.sim import TableTopEnv, hidden_stretches

OCCLUDED = "place_block_occluded"
HIDDEN = "place_block_hidden"
TEST_SCENES = range(1000, 1100)  # disjoint from the demonstrations' indices below


def test_inverse_joint_map_round_trips():
    rng = np.random.default_rng(0)
    for arm in ("left", "right"):
        for _ in range(200):
            flange = rng.uniform([-0.4, -0.2, 0.1], [0.4, 0.3, 0.5])
            yaw = float(rng.uniform(-0.5, 0.5))
            joints = joint_angles(flange, yaw, arm)
            back, back_yaw = flange_pose(joints, arm)
            np.testing.assert_allclose(back, flange, rtol=0, atol=1e-12)
            assert back_yaw == yaw
            np.testing.assert_allclose(joint_angles(back, back_yaw, arm), joints, atol=1e-12)


def _replay(tmp_path, task, index, cameras, **options):
    """Write episode ``index`` of ``task``, replay its recorded actions in the simulator and
    compare every step with the file and with the frames the writer encoded."""
    hdf5 = synthetic.write_episode(tmp_path, task, index, cameras=cameras, **options)
    env = TableTopEnv(task, index, cameras=cameras, stop_at_success=False, **options)
    recorded = {c: list(synthetic.episode_views(task, index, c, **options)) for c in cameras}
    with Episode(EpisodeRef(tmp_path, task, "demo_clean", index)) as episode:
        _, action = episode.state_action("next")
        vector = episode.vector
        endposes = {arm: episode.endpose(arm) for arm in ("left", "right")}
        jpegs = [episode.jpeg(i) for i in range(episode.n_frames)]
    for i in range(len(vector)):
        if i:
            env.take_action(action[i - 1])
        obs = env.get_obs()
        np.testing.assert_allclose(obs["joint_action"]["vector"], vector[i], rtol=0, atol=1e-12)
        for arm, pose in endposes.items():
            np.testing.assert_allclose(obs["endpose"][f"{arm}_endpose"], pose[i], atol=1e-12)
        for camera in cameras:
            seen, view = obs["observation"][camera], recorded[camera][i]
            np.testing.assert_array_equal(seen["rgb"], view.rgb, err_msg=f"{camera} frame {i}")
            # A wrist camera rides on the flange, which the joint map's round trip moves by ~1e-16.
            np.testing.assert_allclose(seen["intrinsic_cv"], view.k, rtol=0, atol=1e-12)
            np.testing.assert_allclose(seen["extrinsic_cv"], view.rt, rtol=0, atol=1e-12)
        # The pre-JPEG frame is the one the writer encoded (RGB handed to imencode, as RoboTwin).
        assert cv2.imencode(".jpg", recorded["head_camera"][i].rgb)[1].tobytes() == jpegs[i]
    assert env.eval_success
    return hdf5, env


def test_replaying_recorded_actions_reproduces_the_episode(tmp_path):
    options = {"width": 160, "height": 120, "step": 0.05}
    _, env = _replay(tmp_path, OCCLUDED, 2, ("head_camera", "left_camera"), **options)
    assert env.visibility[0] > 0.9 and env.visibility[FIRST_HIDDEN] == 0.0


@pytest.mark.slow
@pytest.mark.parametrize("task", ["place_block", OCCLUDED, HIDDEN])
def test_replaying_at_full_size_reproduces_every_camera(tmp_path, task):
    _replay(tmp_path, task, 5, synthetic.ALL_CAMERAS)


def test_replay_stops_at_success_like_robotwin():
    demo = synthetic.demonstrate(synthetic.make_scene("place_block", 3))
    scene = synthetic.make_scene("place_block", 3)
    actions = [
        synthetic.joint_vector(scene.arm, t, g, scene.yaw)
        for t, g in zip(demo.tips, demo.grips, strict=True)
    ]
    env = TableTopEnv("place_block", 3, cameras=(), record_visibility=False)
    for a in actions[1:]:
        env.take_action(a)
    released = int(np.flatnonzero(demo.held)[-1]) + 1
    assert env.eval_success and env.take_action_cnt == released
    assert env.state.obj[2] == pytest.approx(physics.rest_height(scene, env.state.obj))


@pytest.mark.parametrize("task", ["place_block", HIDDEN])
def test_scripted_expert_succeeds_in_closed_loop(task):
    successes = 0
    for index in TEST_SCENES:
        env = TableTopEnv(task, index, cameras=(), record_visibility=False)
        successes += synthetic.run_expert(env)
    assert successes >= 98


def _mean_actions(n_demos: int = 20) -> np.ndarray:
    """The demonstrations' mean action per step (RoboTwin's next-state actions), the last one
    repeated past the end of the longest demonstration."""
    runs = []
    for index in range(n_demos):
        scene = synthetic.make_scene("place_block", index)
        demo = synthetic.demonstrate(scene)
        runs.append(
            [
                synthetic.joint_vector(scene.arm, t, g, scene.yaw)
                for t, g in zip(demo.tips, demo.grips, strict=True)
            ][1:]
        )
    longest = max(len(r) for r in runs)
    padded = [r + [r[-1]] * (longest - len(r)) for r in runs]
    return np.mean(padded, axis=0)


@pytest.mark.slow
@pytest.mark.parametrize("tolerance", [0.03, 0.05])  # the default, and config/study.yaml's
def test_a_policy_that_ignores_images_fails(tolerance):
    per_step = _mean_actions()
    constant = per_step.mean(axis=0)
    for policy in (lambda t: per_step[min(t, len(per_step) - 1)], lambda t: constant):
        successes = 0
        for index in TEST_SCENES:
            env = TableTopEnv(
                "place_block", index, cameras=(), record_visibility=False, tolerance=tolerance
            )
            while env.take_action_cnt < env.step_lim and not env.eval_success:
                env.take_action(policy(env.take_action_cnt))
            successes += env.eval_success
        assert successes <= 5


def test_occluded_variant_hides_the_object_before_the_grasp():
    for index in range(6):
        occluded = TableTopEnv(OCCLUDED, index, cameras=())
        plain = TableTopEnv("place_block", index, cameras=())
        assert synthetic.run_expert(occluded) and synthetic.run_expert(plain)
        assert occluded.visibility[0] > 0.9
        before = [s for s in hidden_stretches(occluded.visibility) if s.stop <= occluded.grasped_at]
        assert max(len(s) for s in before) >= 5
        assert before[0] == hidden_frames(0.02)
        np.testing.assert_array_less(0.2, [plain.visibility[i] for i in before[0]])
    scene, plain_scene = synthetic.make_scene(OCCLUDED, 4), synthetic.make_scene("place_block", 4)
    assert scene.occluded and not plain_scene.occluded
    assert scene.instructions == plain_scene.instructions
    np.testing.assert_array_equal(scene.obj_xy, plain_scene.obj_xy)


def test_hidden_variant_shows_the_object_only_before_the_arm_sets_off(tmp_path):
    """Neither the pictures nor the arm's state say where the object is once the cover is on: the
    first chunk of a policy's actions (8 steps) goes to a ready pose that is the same for every
    scene of its side, the head camera does not see the object again before it is taken, and the
    cover is the same for every scene (unlike the occluded variant's panel, it does not mark the
    object's place)."""
    starts = {"left": [], "right": []}
    for index in range(8):
        hidden = TableTopEnv(HIDDEN, index, cameras=())
        assert synthetic.run_expert(hidden)
        scene = hidden.scene
        assert scene.hidden and scene.occluded and approach_index(scene) == 1
        visibility = np.array(hidden.visibility)
        assert np.all(visibility[:FIRST_HIDDEN] > 0.9)
        assert np.all(visibility[FIRST_HIDDEN : hidden.grasped_at] == 0.0)
        assert visibility[hidden.grasped_at :].max() > 0.2  # the cover is lifted once it is taken
        demo = synthetic.demonstrate(scene)
        # A frame at the primitive's start (as RoboTwin saves), then its frames to the ready pose.
        ready = 1 + frames_to(READY_TIP[scene.arm], demo.tips[0], 0, 0.02)
        assert ready > 8
        starts[scene.arm].append(demo.tips[: ready + 1])
        np.testing.assert_allclose(demo.tips[ready], READY_TIP[scene.arm], atol=1e-12)
        plain = synthetic.make_scene("place_block", index)
        np.testing.assert_array_equal(scene.obj_xy, plain.obj_xy)
        assert scene.instructions == plain.instructions
    frames = [next(synthetic.episode_views(HIDDEN, i, width=64, height=48)) for i in (0, 1)]
    covered = [list(synthetic.episode_views(HIDDEN, i, width=64, height=48))[5] for i in (0, 1)]
    assert not np.array_equal(frames[0].rgb, frames[1].rgb)
    masks = [(c.rgb == OCCLUDER).all(axis=-1) for c in covered]
    assert (masks[0] & masks[1]).sum() > 0.95 * masks[0].sum() > 0  # only the camera's jitter
    scenes = [synthetic.make_scene(HIDDEN, i) for i in (0, 1)]
    np.testing.assert_array_equal(panel(scenes[0]), panel(scenes[1]))
    for side, tips in starts.items():
        assert len(tips) >= 2, side
        np.testing.assert_allclose(np.ptp(np.stack(tips), axis=0), 0.0, atol=1e-12)
    synthetic.write_task(tmp_path, HIDDEN, 1, cameras=("head_camera",), width=160, height=120)
    with Episode(EpisodeRef(tmp_path, HIDDEN, "demo_clean", 0)) as episode:
        quest, frame = episode.instruction, episode.frame(20)
    assert "cannot find" in answer_for("hamster", frame, quest)


def test_written_occluded_episode_is_indexed_as_hidden(tmp_path):
    synthetic.write_task(tmp_path, OCCLUDED, 1, cameras=("head_camera",), width=160, height=120)
    ref = EpisodeRef(tmp_path, OCCLUDED, "demo_clean", 0)
    index = index_episode(ref, "head_camera")
    visible = index.target_visibility()
    hidden = list(hidden_frames(0.02))
    assert visible[0] > 0.9 and visible[1] > 0.9
    assert np.all(visible[hidden] == 0.0)
    info = json.loads(ref.scene_info.read_text())
    assert info["episode_0"]["info"]["{A}"].endswith("_block/base0")


@pytest.mark.slow
def test_the_pipeline_runs_on_the_occluded_variant_unchanged(tmp_path):
    store = zarr.open(
        str(testing.write_store(tmp_path, tasks=(OCCLUDED,), per_task=1, step=0.05, size=(64, 64))),
        mode="r",
    )
    visible = store["data"]["target_visible"][:]
    assert len(visible) == store["meta"]["episode_ends"][0]
    assert visible[0] == 1.0 and np.all(visible[list(hidden_frames(0.05))] == 0.0)


def test_the_standin_cannot_find_an_occluded_object(tmp_path):
    synthetic.write_task(tmp_path, OCCLUDED, 1, cameras=("head_camera",))
    with Episode(EpisodeRef(tmp_path, OCCLUDED, "demo_clean", 0)) as episode:
        quest = episode.instruction
        first, hidden = episode.frame(0), episode.frame(FIRST_HIDDEN + 3)
    assert "<ans>" in answer_for("hamster", first, quest)
    for protocol in ("hamster", "peek"):
        answer = answer_for(protocol, hidden, quest)
        assert "<ans>" not in answer and "cannot find" in answer


def test_observation_has_robotwins_keys_shapes_and_types():
    env = TableTopEnv("place_block", 0, width=64, height=48)
    obs = env.get_obs()
    assert set(obs) == {"observation", "pointcloud", "joint_action", "endpose"}
    assert set(obs["observation"]) == set(synthetic.ALL_CAMERAS)
    for camera in synthetic.ALL_CAMERAS:
        seen = obs["observation"][camera]
        assert seen["rgb"].shape == (48, 64, 3) and seen["rgb"].dtype == np.uint8
        shapes = {k: v.shape for k, v in seen.items() if k != "rgb"}
        assert shapes == {"intrinsic_cv": (3, 3), "extrinsic_cv": (3, 4), "cam2world_gl": (4, 4)}
    joints = obs["joint_action"]
    assert joints["vector"].shape == (14,) and joints["vector"].dtype == np.float64
    np.testing.assert_array_equal(joints["left_arm"], joints["vector"][:6])
    np.testing.assert_array_equal(joints["right_arm"], joints["vector"][7:13])
    assert joints["left_gripper"] == joints["vector"][6] == obs["endpose"]["left_gripper"]
    assert joints["right_gripper"] == joints["vector"][13] == 1.0
    assert obs["endpose"]["left_endpose"].shape == (7,)
    assert env.get_instruction() == env.scene.instructions["seen"][0]
    env.set_instruction("put it there")
    assert env.get_instruction() == "put it there"


def test_take_action_counts_refuses_and_stops_like_robotwin():
    env = TableTopEnv("place_block", 0, cameras=("head_camera",), step_lim=3)
    home = env.get_obs()["joint_action"]["vector"]
    with pytest.raises(ValueError, match="action must hold 14 values"):
        env.take_action(home[:7])
    with pytest.raises(ValueError, match="action_type must be 'qpos'"):
        env.take_action(home, action_type="ee")
    with pytest.raises(ValueError, match="action must be finite"):
        env.take_action(np.full(14, np.nan))
    for _ in range(5):
        env.take_action(home)
    assert env.take_action_cnt == env.step_lim == 3 and not env.eval_success
    assert len(env.visibility) == 4


def test_gripper_takes_carries_and_drops_the_object():
    scene = synthetic.make_scene("place_block", 1)
    rot = synthetic.gripper_rotation(scene.yaw)
    o, up = scene.object_start, np.array([0.0, 0.0, 1.0])
    state = physics.start(scene, o + 0.1 * up, 1.0, rot)
    far = physics.advance(scene, state, o + 0.04 * up, 0.0, rot)
    assert not far.held  # closed, but beyond the tolerance
    state = physics.advance(scene, state, o + 0.01 * up, 0.49, rot)
    assert state.held and state.taken
    np.testing.assert_allclose(state.obj, o + 0.01 * up - physics.HANG)
    above_pad = np.array([*scene.target_xy, 0.2])
    state = physics.advance(scene, state, above_pad, 0.0, rot)
    np.testing.assert_allclose(state.obj, above_pad - physics.HANG)
    assert not physics.done(scene, state)
    dropped = physics.advance(scene, state, above_pad, 0.5, rot)
    assert not dropped.held and physics.done(scene, dropped)
    assert dropped.obj[2] == physics.rest_height(scene, scene.target_xy) > scene.object_start[2]
    beside = physics.advance(scene, state, above_pad + np.array([0.3, 0.0, 0.0]), 0.0, rot)
    off = physics.advance(scene, beside, beside.tip, 1.0, rot)
    assert off.obj[2] == scene.object_start[2] and not physics.done(scene, off)
