#!/usr/bin/env python3
"""Run one JALA task end to end: node graph up, one policy rollout, report, graph down.

    python launch/run_task.py water_plant --sim --duration 20

Same as ``python -m jala_bringup.run``; this wrapper also works before the ROS packages are pip-installed
(it puts ros2_ws/src/* on sys.path). See ``--help``.
"""
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
for p in (ROOT / "ros2_ws" / "src" / "jala_bringup", ROOT / "ros2_ws" / "src" / "jala_ros", ROOT):
    if str(p) not in sys.path:
        sys.path.insert(0, str(p))

from jala_bringup.run import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
