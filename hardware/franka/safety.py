"""Safety gate in front of every FR3 joint command: checks a whole chunk and refuses it (SafetyViolation) before
anything is sent. It never clips: a chunk is either sent exactly as given or not at all.

Checks, in order (the first failing one is reported, naming waypoint, joint, value and limit):
1. shape (N, 7), finite times/positions, times positive and strictly increasing, horizon <= ``max_horizon_s``;
   the measured joint positions are finite and (7,);
2. joint position limits (FR3 datasheet, optionally shrunk by ``position_margin``);
3. joint velocity limits: |q[i] - q[i-1]| / (t[i] - t[i-1]) <= velocity_scale * dq_max for every segment,
   including the first one from the measured position (at t = 0) to waypoint 0;
4. maximum step between consecutive targets (``max_step``) and from the measured position to waypoint 0
   (``max_first_step``);
5. optional Cartesian workspace box: the flange origin and the TCP (``flange_to_tcp``) of every waypoint, from
   FR3 forward kinematics, must lie inside [workspace_min, workspace_max] (base frame, metres).

The gate takes relative waypoint times and (N, 7) positions, as ``hardware.interfaces.arm_waypoints`` gives
them for a ``TimedChunk``. FR3 limits (datasheet, identical to franky-sim's ``assets/fr3.xml``) come from
``embodiment``, the one place they are written.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from embodiment import ARM_DOF, FR3_DQ_MAX, FR3_Q_MAX, FR3_Q_MIN  # noqa: F401 (limits re-exported by hardware.franka)
from hardware.franka.kinematics import fr3_flange_poses
from hardware.interfaces import SafetyViolation


def _vec(values: Sequence[float], n: int, name: str) -> tuple[float, ...]:
    v = tuple(float(x) for x in values)
    if len(v) != n or not all(np.isfinite(v)):
        raise ValueError(f"{name} needs {n} finite numbers, got {values!r}")
    return v


@dataclass(frozen=True)
class ArmSafetyLimits:
    """Limits the gate enforces. Defaults: FR3 datasheet joint limits, a 0.02 rad margin, full datasheet speed."""

    q_min: tuple[float, ...] = FR3_Q_MIN
    q_max: tuple[float, ...] = FR3_Q_MAX
    position_margin: float = 0.02  # rad kept clear of each joint limit
    dq_max: tuple[float, ...] = FR3_DQ_MAX
    velocity_scale: float = 1.0  # fraction of dq_max a chunk may ask for (0 < s <= 1)
    max_step: float = 0.1  # rad, per joint, between consecutive waypoints (1.5 rad/s at the 15 Hz action rate)
    max_first_step: float = 0.2  # rad, per joint, from the measured position to the first waypoint
    max_horizon_s: float = 5.0  # a chunk may not reach further into the future than this
    workspace_min: tuple[float, float, float] | None = None  # base frame [m]; None = no workspace check
    workspace_max: tuple[float, float, float] | None = None
    flange_to_tcp: tuple[float, ...] | None = None  # 16 numbers, row-major 4x4; TCP also checked when given

    def __post_init__(self):
        object.__setattr__(self, "q_min", _vec(self.q_min, ARM_DOF, "q_min"))
        object.__setattr__(self, "q_max", _vec(self.q_max, ARM_DOF, "q_max"))
        object.__setattr__(self, "dq_max", _vec(self.dq_max, ARM_DOF, "dq_max"))
        lo = np.array(self.q_min) + self.position_margin
        hi = np.array(self.q_max) - self.position_margin
        if self.position_margin < 0 or np.any(lo >= hi):
            raise ValueError(f"position_margin {self.position_margin} leaves no joint range")
        if any(v <= 0 for v in self.dq_max):
            raise ValueError(f"dq_max must be positive, got {self.dq_max}")
        if not 0 < self.velocity_scale <= 1:
            raise ValueError(f"velocity_scale must be in (0, 1], got {self.velocity_scale}")
        for name in ("max_step", "max_first_step", "max_horizon_s"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        if (self.workspace_min is None) != (self.workspace_max is None):
            raise ValueError("give both workspace_min and workspace_max, or neither")
        if self.workspace_min is not None:
            wmin = _vec(self.workspace_min, 3, "workspace_min")
            wmax = _vec(self.workspace_max, 3, "workspace_max")
            if any(a >= b for a, b in zip(wmin, wmax)):
                raise ValueError(f"workspace_min {wmin} must be below workspace_max {wmax} on every axis")
            object.__setattr__(self, "workspace_min", wmin)
            object.__setattr__(self, "workspace_max", wmax)
        if self.flange_to_tcp is not None:
            t = _vec(self.flange_to_tcp, 16, "flange_to_tcp")
            if not np.allclose(np.array(t).reshape(4, 4)[3], [0, 0, 0, 1]):
                raise ValueError("flange_to_tcp must be a homogeneous transform (last row 0 0 0 1)")
            object.__setattr__(self, "flange_to_tcp", t)

    @property
    def q_lower(self) -> np.ndarray:
        return np.array(self.q_min) + self.position_margin

    @property
    def q_upper(self) -> np.ndarray:
        return np.array(self.q_max) - self.position_margin

    @property
    def dq_allowed(self) -> np.ndarray:
        return np.array(self.dq_max) * self.velocity_scale


@dataclass
class ArmSafetyGate:
    """Checks chunks against ``limits``. ``check(times, positions, q_measured)`` takes waypoint times relative to
    now (s, > 0) and (N, 7) joint targets, and returns them validated or raises SafetyViolation."""

    limits: ArmSafetyLimits = field(default_factory=ArmSafetyLimits)

    def check(self, times, positions, q_measured) -> tuple[np.ndarray, np.ndarray]:
        lim = self.limits
        try:
            t = np.asarray(times, dtype=np.float64)
            p = np.asarray(positions, dtype=np.float64)
            q0 = np.asarray(q_measured, dtype=np.float64)
        except (TypeError, ValueError) as exc:
            raise SafetyViolation(f"arm chunk is not numeric: {exc}") from None
        # 1. form
        if t.ndim != 1 or t.shape[0] == 0 or p.shape != (t.shape[0], ARM_DOF):
            raise SafetyViolation(
                f"arm chunk needs times (N,) and positions (N, {ARM_DOF}); got {t.shape} and {p.shape}")
        if q0.shape != (ARM_DOF,) or not np.all(np.isfinite(q0)):
            raise SafetyViolation(f"measured joint positions are unusable: {q0.tolist()}")
        if not np.all(np.isfinite(t)):
            raise SafetyViolation(f"arm chunk times contain NaN/inf: {t.tolist()}")
        bad = np.argwhere(~np.isfinite(p))
        if bad.size:
            i, j = bad[0]
            raise SafetyViolation(f"waypoint {i}: joint {j + 1} target is {p[i, j]} (NaN/inf)")
        if t[0] <= 0 or np.any(np.diff(t) <= 0):
            raise SafetyViolation(f"arm chunk times must be positive and strictly increasing, got {t.tolist()}")
        if t[-1] > lim.max_horizon_s:
            raise SafetyViolation(f"arm chunk reaches {t[-1]:.3f} s ahead, more than max_horizon_s "
                                  f"{lim.max_horizon_s:.3f} s")
        # 2. joint position limits
        lo, hi = lim.q_lower, lim.q_upper
        for mask, bound, raw, word in ((p < lo, lo, lim.q_min, "below the lower"),
                                       (p > hi, hi, lim.q_max, "above the upper")):
            bad = np.argwhere(mask)
            if bad.size:
                i, j = bad[0]
                raise SafetyViolation(
                    f"waypoint {i} (t={t[i]:.3f} s): joint {j + 1} target {p[i, j]:.4f} rad is {word} limit "
                    f"{bound[j]:.4f} rad (FR3 limit {raw[j]:.4f} rad, margin {lim.position_margin:.3f} rad)")
        # 3. velocity and 4. step size, with the measured position as waypoint "-1" at t = 0
        full_p = np.vstack([q0, p])
        full_t = np.concatenate([[0.0], t])
        dq = np.diff(full_p, axis=0)
        dt = np.diff(full_t)[:, None]
        vel = np.abs(dq) / dt
        ratio = vel / lim.dq_allowed
        if np.any(ratio > 1.0):
            i, j = np.unravel_index(np.argmax(ratio), ratio.shape)
            seg = "measured position -> waypoint 0" if i == 0 else f"waypoint {i - 1} -> waypoint {i}"
            raise SafetyViolation(
                f"{seg}: joint {j + 1} needs {vel[i, j]:.3f} rad/s, over the velocity limit "
                f"{lim.dq_allowed[j]:.3f} rad/s ({dq[i, j]:+.4f} rad in {dt[i, 0]:.4f} s)")
        first = np.abs(dq[0])
        if np.any(first > lim.max_first_step):
            j = int(np.argmax(first))
            raise SafetyViolation(
                f"measured position -> waypoint 0: joint {j + 1} step {dq[0, j]:+.4f} rad exceeds max_first_step "
                f"{lim.max_first_step:.4f} rad (measured {q0[j]:.4f}, target {p[0, j]:.4f})")
        if p.shape[0] > 1:
            steps = np.abs(dq[1:])
            if np.any(steps > lim.max_step):
                i, j = np.unravel_index(np.argmax(steps), steps.shape)
                raise SafetyViolation(
                    f"waypoint {i} -> waypoint {i + 1}: joint {j + 1} step {dq[i + 1, j]:+.4f} rad exceeds "
                    f"max_step {lim.max_step:.4f} rad")
        # 5. workspace
        if lim.workspace_min is not None:
            self._check_workspace(t, p)
        return t, p

    def _check_workspace(self, t: np.ndarray, p: np.ndarray) -> None:
        lim = self.limits
        wmin, wmax = np.array(lim.workspace_min), np.array(lim.workspace_max)
        flange = fr3_flange_poses(p)
        points = {"flange": flange[:, :3, 3]}
        if lim.flange_to_tcp is not None:
            points["TCP"] = (flange @ np.array(lim.flange_to_tcp).reshape(4, 4))[:, :3, 3]
        for name, xyz in points.items():
            outside = (xyz < wmin) | (xyz > wmax)
            if np.any(outside):
                i, k = np.argwhere(outside)[0]
                axis = "xyz"[k]
                raise SafetyViolation(
                    f"waypoint {i} (t={t[i]:.3f} s): {name} {axis} = {xyz[i, k]:.4f} m is outside the workspace "
                    f"box [{wmin[k]:.4f}, {wmax[k]:.4f}] m (point {np.round(xyz[i], 4).tolist()})")
