"""Recording stand-ins for an arm and a hand, for the runtime core's logic tests (what was commanded, when).
The drivers themselves are tested against franky-sim and the Modbus emulator (tests/hardware), and the core
runs on the simulated world's devices in tests/runtime/test_executor.py and the evaluation tests."""
from __future__ import annotations

import numpy as np

from hardware.interfaces import SafetyViolation, arm_waypoints


class RecordingArm:
    def __init__(self, refuse: str = ""):
        self.executed: list[tuple[np.ndarray, np.ndarray]] = []  # (times relative to now, positions)
        self.holds = 0
        self.refuse = refuse

    def execute(self, chunk, now):
        rel, q = arm_waypoints(chunk, now)
        if self.refuse:
            raise SafetyViolation(self.refuse)
        self.executed.append((rel, q))

    def hold(self):
        self.holds += 1

    def recover(self):
        pass

    def read_state(self):
        return type("S", (), {"in_error": False, "error_message": ""})()


class RecordingHand:
    def __init__(self):
        self.sent: list[np.ndarray] = []
        self.holds = 0

    def set_angles(self, angles):
        self.sent.append(np.asarray(angles, dtype=float).copy())

    def hold(self):
        self.holds += 1

    def clear_errors(self):
        pass

    def read_state(self):
        return type("S", (), {"has_error": False, "errors": ()})()
