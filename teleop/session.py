"""Operator samples -> ``TimedChunk`` commands for the devices, with the clutch and the deadman.

``TeleopSession.step(now, q_now, hand_now)`` is called once per teleop period (``1 / rate_hz``, by default the
policy's action rate, 15 Hz). It reads the newest sample from the operator source and returns a
``TeleopCommand``:

- ``chunk``: a ``TimedChunk`` of the 13 ``CHUNK_JOINT_NAMES`` columns stamped ``now``, with ``horizon`` waypoints
  at ``now + lead_s + k / rate_hz`` (k = 1..horizon): what goes to the devices, through the same path as a policy chunk
  (``ChunkExecutor.submit`` -> ``ArmFollower`` -> ``Arm.execute`` and its FR3 safety gate; ``HandFollower``).
  There is no other way for teleop to move the robot. With DART noise enabled, the arm columns carry the noise.
- ``clean``: (13,) the operator's own command for ``now + 1 / rate_hz`` (no noise): what a recorder stores as
  the action.
- ``hold``: non-empty when the robot must hold where it is, with the reason: no sample yet, the deadman expired
  (no new sample for ``deadman_s``: network drop, app closed, a stalled source), or the clutch is
  released. No chunk then; ``apply`` (or the owner) holds the devices.
- ``buttons``: the episode / hand buttons of the new sample (also while holding).

Arm: a ``wrist_pose`` goes through ``ArmIK`` (workspace clipping, joint range, step limit: see
``teleop.arm_ik`` for the rule); in relative mode (the default, like a SpaceMouse / VR teleop) the motion is
taken relative to the pose where the clutch engaged, scaled by ``position_scale`` / ``rotation_scale`` and applied
to the robot's hand pose at that moment, so re-engaging after a clutch release or a deadman hold never jumps. An
``arm_q`` (the scripted expert) is used directly, still limited (``ArmIK.joint_target``). Waypoints after the
first continue toward the same target, each step limited again, so every chunk passes the FR3 gate from the
measured position by design.

Hand: ``hand_targets`` if the sample has them, else ``hand_keypoints`` through the retargeter (any callable
``(21, 3) -> (6,)`` or an object with ``retarget``), else HAND_OPEN / HAND_CLOSE buttons, else the last hand
target (initially the measured hand). Clipped to the hand's 0..1000.

Latency: ``latency_clock() - sample.stamp`` when a command is produced from a new sample (``command.latency_s``,
``session.latency_stats()``); both on the operator machine's clock (``time.monotonic`` by default).
"""
from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from embodiment import ACTION_DT, ARM_DOF, CHUNK_JOINT_NAMES, HAND_DOF, HAND_RANGE
from jala_runtime.chunk import TimedChunk
from jala_runtime.stats import percentiles

from .arm_ik import rotation_exp, rotation_log
from .operator import Button, OperatorSample, OperatorSource

__all__ = ["HOLD_PREFIX", "TeleopCommand", "TeleopConfig", "TeleopSession"]

HOLD_PREFIX = "teleop: "  # reason prefix of the holds ``TeleopSession.apply`` requests


@dataclass
class TeleopConfig:
    rate_hz: float = 1.0 / ACTION_DT  # commands per second (the policy's action rate)
    deadman_s: float = 0.2  # no new operator sample for this long: hold (checked at every step)
    relative: bool = True  # wrist motion relative to the clutch point (False: wrist_pose is the absolute target)
    position_scale: float = 1.0  # robot motion per operator motion (relative mode)
    rotation_scale: float = 1.0
    horizon: int = 2  # waypoints per chunk
    # the first waypoint is due lead_s + 1 / rate_hz after the command. Over ROS the chunk reaches the arm over DDS
    # (tens of ms on a loaded machine) and the FR3 gate judges the speed from the measured position over the time
    # that is LEFT to the first waypoint; each waypoint's step is limited for one period, so the teleop node uses a
    # lead of one period. In process (the simulated record command) there is no transport: 0
    lead_s: float = 0.0
    dart_noise: float = 0.0  # DART: std (rad) of the noise added to the executed arm targets; 0 = off
    dart_smoothness: float = 0.9  # AR(1) coefficient of the noise from one command to the next (0 = white)
    seed: int | None = None  # of the DART noise
    latency_window: int = 1000  # latencies kept for latency_stats()

    def __post_init__(self):
        if not self.rate_hz > 0:
            raise ValueError(f"rate_hz must be positive, got {self.rate_hz}")
        if self.lead_s < 0:
            raise ValueError(f"lead_s must be >= 0, got {self.lead_s}")
        if not self.deadman_s > 0:
            raise ValueError(f"deadman_s must be positive, got {self.deadman_s}")
        if self.horizon < 1:
            raise ValueError(f"horizon must be >= 1, got {self.horizon}")
        if self.dart_noise < 0 or not 0 <= self.dart_smoothness < 1:
            raise ValueError("dart_noise must be >= 0 and dart_smoothness in [0, 1)")
        if not (self.position_scale > 0 and self.rotation_scale >= 0):
            raise ValueError("position_scale must be > 0 and rotation_scale >= 0")

    @property
    def period(self) -> float:
        return 1.0 / self.rate_hz


@dataclass(frozen=True)
class TeleopCommand:
    chunk: TimedChunk | None  # what goes to the devices (None while holding)
    clean: np.ndarray | None  # (13,) the operator's command without DART noise (the recorded action)
    hold: str = ""  # non-empty: hold where it is, for this reason
    buttons: frozenset[Button] = field(default_factory=frozenset)
    latency_s: float | None = None  # sample.stamp -> this command (a command from a new sample only)
    sample_age_s: float = float("inf")  # now - when the last sample was received (session clock)
    target_pose: np.ndarray | None = None  # (4, 4) the wrist target after workspace clipping (pose commands)
    workspace_clipped: bool = False
    step_clipped: bool = False
    new_sample: bool = False


def _invalid(s: OperatorSample) -> str:
    """Why a sample's arm input cannot be used ('' when it can): a broken reading holds, it is never sent."""
    for name, shape in (("wrist_pose", (4, 4)), ("arm_q", (ARM_DOF,))):
        v = getattr(s, name)
        if v is None:
            continue
        a = np.asarray(v, dtype=np.float64)
        if a.shape != shape or not np.all(np.isfinite(a)):
            return f"invalid operator sample: {name} is not a finite {shape} array"
    return ""


class TeleopSession:
    """One operator driving the robot. ``ik``: an ``ArmIK`` (None: ``ArmIK()`` with its defaults; anything with
    ``fk``, ``solve_target``, ``joint_goal``, ``limit_step``). ``retargeter``: hand keypoints -> (6,) Inspire targets
    (a callable or an object with ``retarget``, e.g. ``teleop.retarget.HandRetargeter``)."""

    def __init__(self, source: OperatorSource, ik=None, retargeter=None, config: TeleopConfig | None = None,
                 latency_clock: Callable[[], float] = time.monotonic):
        self.source = source
        if ik is None:
            from .arm_ik import ArmIK

            ik = ArmIK()
        self.ik = ik
        self.config = config or TeleopConfig()
        self.retarget = None if retargeter is None else getattr(retargeter, "retarget", retargeter)
        self.latency_clock = latency_clock
        self._rng = np.random.default_rng(self.config.seed)
        self._noise = np.zeros(ARM_DOF)
        self._held_executor = None  # the executor this session put on hold (apply)
        self.reset()

    def reset(self) -> None:
        """Forget the stream (a new episode): the next command needs a new sample and re-anchors."""
        self.last_sample: OperatorSample | None = None
        self.last_rx = -float("inf")  # session time the last sample arrived
        self._anchor: tuple[np.ndarray, np.ndarray] | None = None  # (operator pose, robot pose) at the clutch
        self._hand_target: np.ndarray | None = None
        self._arm_target: np.ndarray | None = None
        self.holding = "no operator sample yet"
        self.commands = 0
        self.holds = 0
        self.latencies: deque[float] = deque(maxlen=self.config.latency_window)
        self._noise[:] = 0.0

    # ------------------------------------------------------------------------------------------ step
    def step(self, now: float, q_now, hand_now) -> TeleopCommand:
        cfg = self.config
        q_now = np.asarray(q_now, dtype=np.float64).reshape(ARM_DOF)
        hand_now = np.asarray(hand_now, dtype=np.float64).reshape(HAND_DOF)
        sample = self.source.read()
        buttons: frozenset[Button] = frozenset()
        if sample is not None:
            self.last_sample, self.last_rx = sample, float(now)
            buttons = frozenset(sample.buttons)
            self._hand_buttons(buttons)
        age = float(now) - self.last_rx
        s = self.last_sample
        why = ""
        if s is None:
            why = "no operator sample yet"
        elif age >= cfg.deadman_s - 1e-9:  # silent for deadman_s (float slack: 3 periods of 1/15 s are 0.2 s)
            why = f"deadman: no operator sample for {age:.3f} s (deadman_s {cfg.deadman_s:.3f} s)"
        elif not s.clutch:
            why = "clutch released"
        else:
            why = _invalid(s) or ("" if np.all(np.isfinite(q_now)) else "measured arm joint positions are not finite")
        if why:
            return self._hold(why, buttons, age)
        return self._command(float(now), q_now, hand_now, s, sample is not None, buttons, age)

    def _hold(self, why: str, buttons, age: float) -> TeleopCommand:
        if not self.holding:
            self.holds += 1
        self.holding = why
        self._anchor = None  # re-anchor on resume: no jump
        self._arm_target = None
        return TeleopCommand(None, None, why, buttons, sample_age_s=age)

    def _command(self, now: float, q_now: np.ndarray, hand_now: np.ndarray, s: OperatorSample, new: bool,
                 buttons, age: float) -> TeleopCommand:
        cfg = self.config
        dt = cfg.period
        resumed = bool(self.holding)
        self.holding = ""
        target_pose = None
        ws_clipped = False
        step_clipped = False
        # ---- arm: the target the waypoints head for (joint space), and the first (limited) step
        if s.arm_q is not None:
            q_goal = self.ik.joint_goal(np.asarray(s.arm_q, dtype=np.float64).reshape(ARM_DOF), dt)
            q1, step_clipped = self.ik.limit_step(q_now, q_goal, dt)
        elif s.wrist_pose is not None:
            target_pose = self._wrist_target(q_now, np.asarray(s.wrist_pose, dtype=np.float64), resumed)
            res = self.ik.solve_target(q_now, target_pose, dt)
            q1, q_goal = res.q, res.q_solution
            target_pose, ws_clipped, step_clipped = res.target, res.workspace_clipped, res.step_clipped
        else:  # no arm input: keep the last arm target (the measured position after a hold)
            q_goal = q_now if self._arm_target is None else self._arm_target
            q1, step_clipped = self.ik.limit_step(q_now, q_goal, dt)
        self._arm_target = q_goal
        arm = [q1]
        for _ in range(cfg.horizon - 1):
            nxt, _ = self.ik.limit_step(arm[-1], q_goal, dt)
            arm.append(nxt)
        arm = np.array(arm)
        step_clipped = step_clipped or not np.allclose(arm[-1], q_goal)
        # ---- hand
        hand = self._hand(s, hand_now)
        clean = np.concatenate([arm[0], hand])
        executed = arm
        if cfg.dart_noise > 0:
            executed = self._dart(q_now, arm, dt)
        positions = np.hstack([executed, np.repeat(hand[None], cfg.horizon, axis=0)])
        times = now + cfg.lead_s + dt * np.arange(1, cfg.horizon + 1, dtype=np.float64)
        chunk = TimedChunk(times, positions, CHUNK_JOINT_NAMES, now)
        latency = None
        if new:
            latency = float(self.latency_clock() - s.stamp)
            self.latencies.append(latency)
        self.commands += 1
        return TeleopCommand(chunk, clean, "", buttons, latency, age, target_pose, ws_clipped, step_clipped, new)

    # ------------------------------------------------------------------------------------------ arm
    def _wrist_target(self, q_now: np.ndarray, op: np.ndarray, resumed: bool) -> np.ndarray:
        cfg = self.config
        if not cfg.relative:
            return op
        if self._anchor is None or resumed:
            self._anchor = (op.copy(), self.ik.fk(q_now))
        op0, rob0 = self._anchor
        target = np.eye(4)
        target[:3, 3] = rob0[:3, 3] + cfg.position_scale * (op[:3, 3] - op0[:3, 3])
        d_rot = rotation_log(op[:3, :3] @ op0[:3, :3].T)  # operator rotation since the clutch point (base frame)
        target[:3, :3] = rotation_exp(cfg.rotation_scale * d_rot) @ rob0[:3, :3]
        return target

    def _dart(self, q_now: np.ndarray, arm: np.ndarray, dt: float) -> np.ndarray:
        """DART: a smooth (AR(1)) joint offset on the executed targets, limited again like any command."""
        cfg = self.config
        a = cfg.dart_smoothness
        self._noise = a * self._noise + np.sqrt(1.0 - a * a) * cfg.dart_noise * self._rng.standard_normal(ARM_DOF)
        out = []
        prev = q_now
        for q in arm:
            nxt, _ = self.ik.limit_step(prev, q + self._noise, dt)
            out.append(nxt)
            prev = nxt
        return np.array(out)

    # ------------------------------------------------------------------------------------------ hand
    def _hand_buttons(self, buttons) -> None:
        if Button.HAND_OPEN in buttons:
            self._hand_target = np.full(HAND_DOF, HAND_RANGE[1])
        elif Button.HAND_CLOSE in buttons:
            self._hand_target = np.full(HAND_DOF, HAND_RANGE[0])

    def _hand(self, s: OperatorSample, hand_now: np.ndarray) -> np.ndarray:
        if s.hand_targets is not None:
            h = np.asarray(s.hand_targets, dtype=np.float64).reshape(HAND_DOF)
        elif s.hand_keypoints is not None and self.retarget is not None:
            h = np.asarray(self.retarget(np.asarray(s.hand_keypoints, dtype=np.float64)), dtype=np.float64)
            h = h.reshape(HAND_DOF)
        elif self._hand_target is not None:
            h = self._hand_target
        else:
            h = hand_now
        if not np.all(np.isfinite(h)):  # a broken reading: keep the last target
            h = hand_now if self._hand_target is None else self._hand_target
        h = np.clip(h, *HAND_RANGE)
        self._hand_target = h
        return h

    # ------------------------------------------------------------------------------------------ devices
    def apply(self, command: TeleopCommand, executor, now: float) -> bool:
        """Send ``command`` through ``executor`` (a ``ChunkExecutor``, or anything with ``submit``, ``hold``,
        ``recover``, ``held``, ``fault``). A hold command holds both devices (reason "teleop: ..."). A chunk while
        the devices are held by this session's own hold first recovers them and runs from the next command (chunks
        computed before a recover are refused by design); a hold that is not the session's (a refused chunk, a
        device fault, an e-stop or watchdog hold) is never cleared here: the chunk is not sent. True when the chunk
        was accepted."""
        if command.hold:
            if not executor.held:
                executor.hold(f"{HOLD_PREFIX}{command.hold}")
                self._held_executor = executor
            return False
        if command.chunk is None:
            return False
        if executor.held:
            if not self._own_hold(executor):
                return False
            ok, _ = executor.recover()
            self._held_executor = None
            if not ok:
                return False
            recovered_at = max((getattr(f, "recovered_at", -float("inf")) for f in getattr(executor, "followers", ())),
                               default=-float("inf"))
            if command.chunk.stamp < recovered_at:  # computed before the recover: refused by design; next one runs
                return False
        return executor.submit(command.chunk, now)

    def _own_hold(self, executor) -> bool:
        """The devices are held because this session asked for it (and for nothing else)."""
        if self._held_executor is not executor or executor.fault:
            return False
        reasons = [getattr(f, "hold_reason", "") for f in getattr(executor, "followers", ()) if getattr(f, "held", 0)]
        return all(r.startswith(HOLD_PREFIX) for r in reasons)

    # ------------------------------------------------------------------------------------------ stats
    def latency_stats(self) -> dict[str, float]:
        """Teleop latency (sample stamp -> command) over the last ``latency_window`` commands: p50, p99, max,
        last (seconds) and count."""
        v = list(self.latencies)
        out = percentiles(v, (50, 99))
        out["max"] = float(max(v)) if v else float("nan")
        out["last"] = float(v[-1]) if v else float("nan")
        out["count"] = float(len(v))
        return out

    def close(self) -> None:
        self.source.close()
