"""The robot's layout, written once: every layer (policy, drivers, simulated world, runtime, ROS nodes, training)
reads its joint names, limits, poses, rates and default ports from here.

Today there is one embodiment, a Franka Research 3 arm carrying one right Inspire RH56 hand
(:mod:`embodiment.fr3_inspire`). A second arm or hand model adds its own module here (and its driver under
``hardware/``, registered in ``hardware.registry``).
"""
from .fr3_inspire import *  # noqa: F401,F403
from .fr3_inspire import __all__  # noqa: F401
