"""Is this process's DDS traffic confined to the machine, or protected by DDS Security? (plain Python)

The runtime's command topics (action chunks, the hold) and services (estop, reset, recover) carry no
authentication of their own: on an open network anyone who can reach DDS can drive the robot. Safe setups are
(a) DDS on loopback (jala_bringup's Fast DDS profile, the default) or an isolated robot network, or (b) SROS2
(DDS Security with one enclave per node; see ros2_ws/README.md, "Security"). The Fast DDS build in the PyPI
wheels has no security plugins, so pip-only setups must use (a).
"""
from __future__ import annotations

import os
from collections.abc import Mapping

LOOPBACK_PROFILE_NAME = "fastdds_loopback.xml"


def dds_confined(env: Mapping[str, str]) -> bool:
    """True when DDS discovery stays on this machine: jala_bringup's loopback profile, or ROS 2's own
    ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST/OFF."""
    profile = env.get("FASTRTPS_DEFAULT_PROFILES_FILE") or env.get("FASTDDS_DEFAULT_PROFILES_FILE") or ""
    if os.path.basename(profile) == LOOPBACK_PROFILE_NAME:
        return True
    return env.get("ROS_AUTOMATIC_DISCOVERY_RANGE", "").upper() in ("LOCALHOST", "OFF")


def dds_security_enforced(env: Mapping[str, str]) -> bool:
    return (env.get("ROS_SECURITY_ENABLE", "").lower() == "true"
            and env.get("ROS_SECURITY_STRATEGY", "").lower() == "enforce")


def exposure_warning(env: Mapping[str, str] | None = None) -> str:
    """'' when DDS is confined to this machine or SROS2 is enforced; else the warning to print at start."""
    env = os.environ if env is None else env
    if dds_confined(env) or dds_security_enforced(env):
        return ""
    return ("WARNING: DDS is not confined to this machine and DDS Security is off: anyone on this network can "
            "publish action chunks or call estop/reset/recover. Use loopback_dds:=true, an isolated robot network, "
            "or SROS2 (ROS_SECURITY_ENABLE=true, ROS_SECURITY_STRATEGY=Enforce; see ros2_ws/README.md, "
            "'Security'). The PyPI Fast DDS build has no security plugins.")
