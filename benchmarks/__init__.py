"""Scripts that print speed figures: ``python -m benchmarks.<name>`` from the repository root."""
from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def use_ros_packages() -> None:
    """Make the ament_python packages importable from the source tree (as a colcon install would)."""
    for p in (ROOT / "ros2_ws" / "src" / "jala_bringup", ROOT / "ros2_ws" / "src" / "jala_ros"):
        if str(p) not in sys.path:
            sys.path.insert(0, str(p))
