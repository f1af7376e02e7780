"""Helpers shared by the tests."""
from __future__ import annotations

import socket
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ROS_SRC = ROOT / "ros2_ws" / "src"


def use_ros_packages() -> None:
    """Make the ament_python packages importable from the source tree (as a colcon install would)."""
    for p in (ROS_SRC / "jala_ros", ROS_SRC / "jala_bringup"):
        if str(p) not in sys.path:
            sys.path.insert(0, str(p))


def wait_until(pred, timeout: float = 5.0, period: float = 0.01):
    """Poll ``pred`` until it returns something truthy (returned); AssertionError after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = pred()
        if value:
            return value
        time.sleep(period)
    raise AssertionError(f"condition not met within {timeout} s")


def free_port() -> int:
    """A loopback TCP port with nothing listening on it (closed again)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
