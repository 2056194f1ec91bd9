"""The scripted expert in closed loop: the demonstration's primitives, planned from the live state.

Where `motion.trajectory` plans the whole episode from the scene before it starts, `Expert` looks
at the simulator's state every step: each primitive (`motion.primitives`) is planned from where
the fingertip and the object are when it begins, and a grasp that did not take the object is
tried again from above it. It reads the true state (no images), so it measures the simulator,
not perception.
"""

from __future__ import annotations

import numpy as np

from overlayflow.synthetic.motion import approach_index, frames_to, primitives
from overlayflow.synthetic.robot import joint_vector
from overlayflow.synthetic.sim import TableTopEnv

# The primitive that lifts the object, counted from the approach: it needs the object held.
LIFT_OFF = 3


class Expert:
    """Acts in a `TableTopEnv` like the scripted demonstrations, ``step`` metres a step."""

    def __init__(self, step: float = 0.02) -> None:
        self.step = step
        self.reset()

    def reset(self) -> None:
        """Forget the episode (call before each new one)."""
        self._phase, self._k, self._n = 0, 0, 0
        self._start = self._goal = np.zeros(3)
        self._open0 = self._open1 = 1.0

    def _begin(self, env: TableTopEnv) -> None:
        """Plan the next primitive from the current state; past the last one, stay put."""
        state = env.state
        first = approach_index(env.scene)
        while True:
            if self._phase == first + LIFT_OFF and not state.held:
                self._phase = first
            plan = primitives(env.scene, state.obj)
            if self._phase >= len(plan):
                self._start, self._goal, self._k, self._n = state.tip, state.tip, 0, 1
                self._open0 = self._open1 = state.openness
                break
            goal, openness, hold = plan[self._phase]
            self._start, self._goal, self._k = state.tip, goal, 0
            self._open0, self._open1 = state.openness, openness
            self._n = frames_to(goal, state.tip, hold, self.step)
            if self._n:
                break
            self._phase += 1

    def __call__(self, env: TableTopEnv) -> np.ndarray:
        """The next 14-D joint action for ``env``."""
        if self._k >= self._n:
            self._begin(env)
        self._k += 1
        a = self._k / self._n
        tip = self._start + a * (self._goal - self._start)
        openness = self._open0 + a * (self._open1 - self._open0)
        if self._k == self._n:
            self._phase += 1
        return joint_vector(env.arm, tip, openness, env.scene.yaw)


def run_expert(env: TableTopEnv) -> bool:
    """Let `Expert` act in ``env`` (at its step) until success or ``step_lim``; returns
    ``env.eval_success``."""
    expert = Expert(env.step)
    while env.take_action_cnt < env.step_lim and not env.eval_success:
        env.take_action(expert(env))
    return env.eval_success
