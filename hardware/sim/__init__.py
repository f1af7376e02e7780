"""Simulated task world (MuJoCo): FR3 + Inspire-style hand + L515-like cameras and the three JALA real-robot
tasks (water_plant, put_three_obj, wipe_board), with devices implementing hardware.interfaces.

    from hardware.sim import SimWorld, SimWorldConfig
    world = SimWorld(SimWorldConfig(task="water_plant", variant="seen", seed=0))
"""
import os

os.environ.setdefault("MUJOCO_GL", "osmesa")  # CPU default; MUJOCO_GL=egl on a GPU machine

from .tasks import INSTRUCTIONS, Completion  # noqa: E402
from .config import SimWorldConfig  # noqa: E402
from .devices import SimArm, SimCamera, SimHand  # noqa: E402
from .world import SimWorld  # noqa: E402

__all__ = ["SimWorld", "SimWorldConfig", "SimArm", "SimHand", "SimCamera", "Completion", "INSTRUCTIONS"]
