"""Topic names and every node's parameters with their defaults (plain Python, no ROS imports).

The nodes declare exactly these names; ``jala_bringup.graph`` checks the YAML configuration against them
before anything starts, and each node process checks its own parameter overrides (``--params-file`` /
``-p``) at start, so a typo'd key (``camera_timout_ms``) is an error naming the key and the allowed ones
instead of a silently ignored setting.
"""
from __future__ import annotations

from collections.abc import Iterable
from typing import Any

DIAGNOSTICS_TOPIC = "/diagnostics"
HOLD_TOPIC = "/jala/hold"
HOLD_REQUEST_TOPIC = "/jala/hold_request"  # std_msgs/String: a reason; the supervisor holds with it
STATUS_TOPIC = "/jala/status"
CHUNK_TOPIC = "/jala/action_chunk"
ARM_STATE_TOPIC = "/jala/arm/joint_states"
HAND_STATE_TOPIC = "/jala/hand/joint_states"
POLICY_RUNNING_TOPIC = "/jala/policy/running"

# Parameters every rclpy node has; never reported as unknown.
ROS_BUILTIN_PARAMETERS = frozenset({"use_sim_time", "start_type_description_service"})

CAMERA_DEFAULTS: dict[str, Any] = {
    "camera_name": "camera",
    "image_topic": "/camera/camera/color/image_raw",
    "info_topic": "/camera/camera/color/camera_info",
    "frame_id": "camera_color_optical_frame",
    "read_timeout_s": 1.0,
    "diagnostics_rate_hz": 2.0,
    # real device (hardware.realsense); ignored in simulation
    "serial": "",
    "width": 960,  # an L515 colour profile
    "height": 540,
    "fps": 30,
    "enable_depth": False,  # the policy uses colour only
    "driver_options": "",  # JSON object passed verbatim to the driver config
}

# What the arm and the hand node share (DeviceNode).
_DEVICE_DEFAULTS: dict[str, Any] = {
    "chunk_topic": CHUNK_TOPIC,
    "hold_topic": HOLD_TOPIC,
    "diagnostics_rate_hz": 5.0,
    "max_chunk_age_s": 1.0,  # a chunk whose observation is older than this is skipped (stale)
    # The node's own threads stopped for longer than this (SIGSTOP, a frozen host): hold at once on resume,
    # before anything queued during the stall runs. = the supervisor's joint-state timeout: a stall that long
    # makes the supervisor hold anyway.
    "stall_hold_s": 0.25,
}

ARM_DEFAULTS: dict[str, Any] = {
    **_DEVICE_DEFAULTS,
    "joint_state_topic": ARM_STATE_TOPIC,
    "joint_state_rate_hz": 200.0,
    "min_lead_s": 0.03,  # waypoints due sooner than this are dropped (no near-instant first segment)
    # real device (hardware.franka); ignored in simulation
    "robot_ip": "",
    "driver_options": "",  # JSON object passed verbatim to the driver config
}

HAND_DEFAULTS: dict[str, Any] = {
    **_DEVICE_DEFAULTS,
    "joint_state_topic": HAND_STATE_TOPIC,
    "joint_state_rate_hz": 100.0,
    # real device (hardware.inspire); ignored in simulation
    "transport": "tcp",  # tcp | rtu
    "hand_host": "127.0.0.1",
    "hand_port": 6000,
    "serial_port": "/dev/ttyUSB0",
    "driver_options": "",  # JSON object passed verbatim to InspireHandConfig
}

POLICY_DEFAULTS: dict[str, Any] = {
    "checkpoint": "",
    "device": "auto",  # auto | cpu | cuda | cuda:N
    "instruction": "water the plant",
    "instruction_topic": "/jala/instruction",
    "image_topics": ["/camera/camera/color/image_raw"],
    "arm_state_topic": ARM_STATE_TOPIC,
    "hand_state_topic": HAND_STATE_TOPIC,
    "chunk_topic": CHUNK_TOPIC,
    "hold_topic": HOLD_TOPIC,
    "status_topic": STATUS_TOPIC,
    "execute_steps": 8,  # actions of a chunk executed before its successor takes over
    "max_obs_age_s": 0.5,  # frames/joint states older than this are not used
    "autostart": False,
    "seed": -1,  # >= 0: reproducible sampling (seed + chunk index)
    "diagnostics_rate_hz": 2.0,
    # the node's threads stopped for longer than this (SIGSTOP, a frozen host): stop the policy on resume, since a
    # hold published during the stall may have been overwritten by the reset that followed it
    "stall_stop_s": 1.0,
}

SUPERVISOR_DEFAULTS: dict[str, Any] = {
    "camera_info_topics": ["/camera/camera/color/camera_info"],
    "camera_timeout_ms": 250.0,
    "chunk_topic": CHUNK_TOPIC,
    # chunks come every execute_steps x action_dt (8 x 66.7 ms); a chunk covers 16 x 66.7 ms = 1.07 s, after
    # which the devices hold on their own
    "policy_timeout_ms": 1000.0,
    "joint_state_topics": [ARM_STATE_TOPIC, HAND_STATE_TOPIC],
    "joint_state_timeout_ms": 250.0,
    "startup_grace_s": 30.0,  # inputs never seen yet fault only after this long
    "check_rate_hz": 100.0,
    # False: camera / joint-state staleness is checked only while the policy runs (nothing moves otherwise, and
    # start-up load does not trip it). Device faults and estop act always.
    "watch_sensors_when_idle": False,
    "fault_diagnostics_prefixes": ["jala/arm", "jala/hand", "jala/camera"],
    "hold_topic": HOLD_TOPIC,
    "hold_request_topic": HOLD_REQUEST_TOPIC,
    "status_topic": STATUS_TOPIC,
    "recover_services": ["/jala/arm/recover", "/jala/hand/recover"],
}

SIM_DEFAULTS: dict[str, Any] = {
    "task": "water_plant",
    "variant": "seen",
    "seed": 0,
    "render_width": 320,
    "render_height": 240,
    "camera_fps": 30.0,
    "world_options": "",
    "camera_names": ["camera"],
    "sim_cameras": [""],
    "image_topics": ["/camera/camera/color/image_raw"],
    "info_topics": ["/camera/camera/color/camera_info"],
    # every arm / hand parameter, prefixed arm_ / hand_, is passed to the arm / hand node without the prefix
    # (the real-device ones among them are ignored in simulation)
    **{f"arm_{k}": v for k, v in ARM_DEFAULTS.items()},
    **{f"hand_{k}": v for k, v in HAND_DEFAULTS.items()},
}
SIM_DEFAULTS["hand_joint_state_rate_hz"] = 125.0  # no Modbus loop to follow: headroom over the 100 Hz needed

# executable -> the parameter names its process accepts
PROCESS_PARAMETERS: dict[str, frozenset[str]] = {
    "camera_node": frozenset(CAMERA_DEFAULTS),
    "arm_node": frozenset(ARM_DEFAULTS),
    "hand_node": frozenset(HAND_DEFAULTS),
    "policy_node": frozenset(POLICY_DEFAULTS),
    "supervisor_node": frozenset(SUPERVISOR_DEFAULTS),
    "sim_devices": frozenset(SIM_DEFAULTS),
}


class UnknownParameterError(ValueError):
    """A parameter name no node of the process declares (most likely a typo)."""


def check_known(given: Iterable[str], allowed: Iterable[str], where: str) -> None:
    """UnknownParameterError naming every key of ``given`` that is not in ``allowed`` (plus the allowed ones)."""
    allowed = set(allowed)
    unknown = sorted(set(given) - allowed - ROS_BUILTIN_PARAMETERS)
    if unknown:
        close = {u: _closest(u, allowed) for u in unknown}
        hints = ", ".join(f"{u!r}" + (f" (did you mean {c!r}?)" if c else "") for u, c in close.items())
        raise UnknownParameterError(f"{where}: unknown parameter(s) {hints}; allowed: {', '.join(sorted(allowed))}")


def _closest(name: str, candidates: set[str]) -> str | None:
    import difflib

    match = difflib.get_close_matches(name, sorted(candidates), n=1, cutoff=0.75)
    return match[0] if match else None
