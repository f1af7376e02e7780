"""The simulated world's scripted expert as an automatic operator (demonstrations without a person).

Each ``read()`` asks ``ScriptedExpert.act(world)`` for its actions (which also advances its plan: phases, checks,
re-grasps) and returns the action due one action step from now as ``arm_q`` (7 FR3 joint targets) +
``hand_targets`` (6 Inspire values), so the expert's commands go through the teleop session and the devices'
safety path like any operator's. ``follow``:
- "plan" (default): the expert's planned joint targets for that time, as an absolute target. The session limits
  the step from the measured position, and with DART noise the recorded clean action pulls the arm back toward
  the plan (the corrective label DART wants); the noise does not accumulate.
- "act": ``act(world)[0]`` as it is: the expert's chunk starts where the arm is measured and blends into the plan
  over 16 steps, so a perturbation is mostly kept (with DART noise the perturbations add up: drift).
Buttons: START with the first sample of an episode; once, when the expert has played its plan or the task
reports success: SAVE when the task succeeded, else DISCARD (a failed demonstration is not kept). The samples go on
after it (the expert holds its last pose); ``reset()`` starts the next episode with START again.
"""
from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np

from embodiment import ACTION_DT, ARM_DOF

from ..operator import Button, OperatorSample

__all__ = ["ExpertOperator"]


class ExpertOperator:
    name = "expert"

    def __init__(self, world, expert=None, clock: Callable[[], float] = time.monotonic, save_on_success: bool = True,
                 follow: str = "plan"):
        """``world``: a ``hardware.sim.world.SimWorld``; ``expert``: its ``ScriptedExpert`` (default
        ``make_expert(world)``, the world's task). ``save_on_success``: SAVE as soon as the task succeeds (else only
        when the plan has played out). ``follow``: "plan" | "act" (see the module)."""
        if follow not in ("plan", "act"):
            raise ValueError(f"follow must be 'plan' or 'act', got {follow!r}")
        if expert is None:
            from hardware.sim.expert import make_expert

            expert = make_expert(world)
        self.world = world
        self.expert = expert
        self.clock = clock
        self.save_on_success = save_on_success
        self.follow = follow
        self.closed = False
        self.reset()

    def reset(self) -> None:
        """A new episode (after ``world.reset``): the expert plans again and START is pressed again."""
        self.expert.reset()
        self.started = False
        self.saved = False
        self.samples = 0
        self.last_actions: np.ndarray | None = None

    @property
    def done(self) -> bool:
        """The expert has played its plan (or the task succeeded, with ``save_on_success``)."""
        if self.expert.done:
            return True
        return bool(self.save_on_success and self.world.completion().success)

    def read(self) -> OperatorSample | None:
        if self.closed:
            return None
        w = self.world
        with w.lock:  # a consistent state while the world runs in real time
            actions = np.asarray(self.expert.act(w), dtype=np.float64)
            first = actions[0]
            sample = getattr(self.expert, "_sample", None)
            if self.follow == "plan" and sample is not None:
                first = np.asarray(sample(w.sim_time + float(getattr(self.expert, "dt", ACTION_DT))), np.float64)
            done = self.done
            success = bool(self.world.completion().success)
        self.last_actions = actions
        buttons = set()
        if not self.started:
            buttons.add(Button.START)
            self.started = True
        if done and not self.saved:  # a demonstration is kept only when the task succeeded
            buttons.add(Button.SAVE if success else Button.DISCARD)
            self.saved = True
        self.samples += 1
        return OperatorSample(stamp=self.clock(), arm_q=first[:ARM_DOF].copy(), hand_targets=first[ARM_DOF:].copy(),
                              clutch=True, buttons=frozenset(buttons))

    def close(self) -> None:
        self.closed = True
