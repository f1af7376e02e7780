"""Franka Research 3 arm through franky-control: driver (``arm.FrankaArm``), safety gate (``safety``), FR3 forward
kinematics (``kinematics``), config (``config``), a franky-sim child-process helper (``sim_server``), the
``jala-hardware-check`` probe (``probe``), and its ``franka_fr3`` arm registration (``registration``, found by
``hardware.registry``).

``FrankaArm`` imports franky; import it from ``hardware.franka.arm``. The rest needs only numpy.
"""
from hardware.franka.config import ChunkInterpolation, FrankaArmConfig, RealtimeMode
from hardware.franka.kinematics import fr3_flange_poses, fr3_forward_kinematics
from hardware.franka.safety import FR3_DQ_MAX, FR3_Q_MAX, FR3_Q_MIN, ArmSafetyGate, ArmSafetyLimits

__all__ = ["ArmSafetyGate", "ArmSafetyLimits", "ChunkInterpolation", "FR3_DQ_MAX", "FR3_Q_MAX", "FR3_Q_MIN",
           "FrankaArmConfig", "RealtimeMode", "fr3_flange_poses", "fr3_forward_kinematics"]
