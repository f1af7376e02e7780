"""Setpoint generators of the simulated devices: the arm's joint-space chunk interpolator and the hand's
rate-limited target follower (run once per control tick by SimWorld)."""
from __future__ import annotations

import numpy as np

from embodiment import HAND_DOF

from .scene import HAND_CLOSED_ANGLE


class ArmController:
    """Joint-space setpoint generator: linear interpolation through the timed waypoints of the current chunk
    (from the setpoint at the moment it was accepted), holding the last waypoint afterwards."""

    def __init__(self, q0: np.ndarray):
        self.setpoint = q0.copy()
        self.velocity = np.zeros_like(q0)  # of the setpoint (feed-forward for the joint servos)
        self.t0 = 0.0
        self.times: np.ndarray | None = None
        self.knots: np.ndarray | None = None

    def start(self, t_now: float, times: np.ndarray, positions: np.ndarray):
        self.t0 = t_now
        self.times = np.concatenate([[0.0], times])
        self.knots = np.vstack([self.setpoint[None], positions])

    def hold(self, q: np.ndarray):
        self.times = None
        self.knots = None
        self.setpoint = q.copy()
        self.velocity = np.zeros_like(q)

    @property
    def active(self) -> bool:
        return self.times is not None

    def update(self, t_now: float) -> np.ndarray:
        if self.times is None:
            self.velocity[:] = 0.0
            return self.setpoint
        tau = t_now - self.t0
        if tau >= self.times[-1]:
            self.setpoint = self.knots[-1].copy()
            self.velocity[:] = 0.0
            self.times = None
            self.knots = None
            return self.setpoint
        k = int(np.searchsorted(self.times, tau, side="right")) - 1
        k = max(0, min(k, len(self.times) - 2))
        a = (tau - self.times[k]) / (self.times[k + 1] - self.times[k])
        self.setpoint = (1 - a) * self.knots[k] + a * self.knots[k + 1]
        self.velocity = (self.knots[k + 1] - self.knots[k]) / (self.times[k + 1] - self.times[k])
        return self.setpoint


class HandController:
    def __init__(self, full_travel_s: float):
        self.target = np.full(HAND_DOF, 1000.0)
        self.command = np.full(HAND_DOF, 1000.0)  # rate-limited internal target
        self.rate = np.full(HAND_DOF, 1000.0 / full_travel_s)  # units per second, per DoF

    def update(self, dt: float) -> np.ndarray:
        step = self.rate * dt
        self.command += np.clip(self.target - self.command, -step, step)
        return (1.0 - self.command / 1000.0) * HAND_CLOSED_ANGLE

