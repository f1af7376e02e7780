"""Topic names and every node's parameters: one config dataclass per node (plain Python, no ROS imports).

A field of a node's config dataclass IS a ROS parameter of that node: same name, its default, and a help string
(``param(default, help, ...)``). Everything else is generated from these dataclasses:

- the nodes declare exactly these fields (``jala_ros.node_utils.declare(node, ConfigCls, ...)``), and each node
  process checks its parameter overrides (``--params-file`` / ``-p``) against ``PROCESS_PARAMETERS`` at start, so
  a typo'd key (``camera_timout_ms``) is an error naming the key and the allowed ones instead of a silently
  ignored setting;
- ``jala_bringup.graph`` checks the task YAML files (config/*.yaml) against the fields;
- a field with ``arg="..."`` is set by the launch argument / runner option of that name: the launch files'
  ``DeclareLaunchArgument``s, the runner's argparse options and ``GraphArgs`` are generated from that metadata
  (``jala_bringup.graph.graph_arguments``), so a launch/CLI argument is declared once, on the field it sets;
- a field with ``driver=True`` (or ``driver="<name>"``) is passed to the device driver's config under that name
  (``driver_params``): the ROS parameter is named like the driver config field (``FrankaArmConfig.robot_ip``,
  ``InspireHandConfig.host``, ``RealSenseCameraConfig.color_width``, ...).
"""
from __future__ import annotations

import copy
import dataclasses
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from embodiment import DEVICE_KINDS, EXECUTE_STEPS, INSPIRE_MODBUS_PORT

DIAGNOSTICS_TOPIC = "/diagnostics"
HOLD_TOPIC = "/jala/hold"
HOLD_REQUEST_TOPIC = "/jala/hold_request"  # std_msgs/String: a reason; the supervisor holds with it
STATUS_TOPIC = "/jala/status"
CHUNK_TOPIC = "/jala/action_chunk"
ARM_STATE_TOPIC = "/jala/arm/joint_states"
HAND_STATE_TOPIC = "/jala/hand/joint_states"
POLICY_RUNNING_TOPIC = "/jala/policy/running"
TELEOP_COMMAND_TOPIC = "/jala/teleop/command"  # sensor_msgs/JointState: the operator's clean command (13 joints)

# Parameters every rclpy node has; never reported as unknown.
ROS_BUILTIN_PARAMETERS = frozenset({"use_sim_time", "start_type_description_service"})


def param(default: Any, help: str, *, arg: str | None = None, arg_help: str | None = None,  # noqa: A002
          choices: tuple | None = None, per_camera: bool = False, cli: bool = True,
          driver: bool | str = False) -> Any:
    """A node parameter: a dataclass field with ``default`` and field metadata.

    ``help``: what the parameter does. ``arg``: the launch argument / runner option (``--arg-name``) that sets it
    (``arg_help``: its description when it differs from ``help``; ``cli=False``: a launch argument only;
    ``per_camera``: one comma-separated value per camera of the task). ``choices``: the allowed values.
    ``driver``: passed to the device driver's config (True: under the same name; a string: under that name)."""
    meta = {"help": help, "arg": arg, "arg_help": arg_help, "choices": choices, "per_camera": per_camera,
            "cli": cli, "driver": driver}
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda: copy.deepcopy(default), metadata=meta)
    return field(default=default, metadata=meta)


def default_of(f: dataclasses.Field) -> Any:
    return f.default_factory() if f.default is dataclasses.MISSING else copy.deepcopy(f.default)


def defaults_of(config_cls) -> dict[str, Any]:
    """{parameter name: default} of a node config dataclass (fresh copies)."""
    return {f.name: default_of(f) for f in dataclasses.fields(config_cls)}


def names_of(config_cls) -> frozenset[str]:
    return frozenset(f.name for f in dataclasses.fields(config_cls))


def driver_params(config_cls, values: dict[str, Any]) -> dict[str, Any]:
    """The driver config keyword arguments among a node's parameter ``values`` (fields marked ``driver``)."""
    out = {}
    for f in dataclasses.fields(config_cls):
        target = f.metadata.get("driver")
        if target:
            out[f.name if target is True else target] = values[f.name]
    return out


# ------------------------------------------------------------------------------------------------- nodes
@dataclass
class CameraNodeConfig:
    """camera_node: one RealSense camera (hardware.realsense) publishing colour frames (realsense-ros names)."""

    camera_name: str = param("camera", "camera slot name (topics /camera/<name>/color/...)", driver="name")
    image_topic: str = param("/camera/camera/color/image_raw", "sensor_msgs/Image topic")
    info_topic: str = param("/camera/camera/color/camera_info", "sensor_msgs/CameraInfo topic")
    frame_id: str = param("camera_color_optical_frame", "header.frame_id of images and camera infos")
    read_timeout_s: float = param(1.0, "a frame read waiting longer than this is a device timeout")
    diagnostics_rate_hz: float = param(2.0, "diagnostics publish rate")
    # real device (hardware.realsense.RealSenseCameraConfig); ignored in simulation
    serial: str = param("", "RealSense serial number ('' = the only connected camera)", driver=True,
                        arg="camera_serials", per_camera=True,
                        arg_help="comma-separated RealSense serials, one per camera of the task (real robot)")
    # an L515 colour profile (1920x1080@30, 1280x720@30/60, 960x540@30); the policy resizes
    color_width: int = param(960, "colour stream width", driver=True)
    color_height: int = param(540, "colour stream height", driver=True)
    color_fps: int = param(30, "colour stream frame rate", driver=True)
    enable_depth: bool = param(False, "stream depth too (the policy uses colour only)", driver=True)
    device_kind: str = param(DEVICE_KINDS["camera"], "camera driver kind (jala_ros.devices.make_device)")
    driver_options: str = param("", "JSON object passed verbatim to the driver config")


@dataclass
class _DeviceNodeConfig:
    """What the arm and the hand node share (DeviceNode)."""

    chunk_topic: str = param(CHUNK_TOPIC, "action chunk topic (trajectory_msgs/JointTrajectory)")
    hold_topic: str = param(HOLD_TOPIC, "latched hold topic (std_msgs/Bool)")
    diagnostics_rate_hz: float = param(5.0, "diagnostics publish rate")
    max_chunk_age_s: float = param(1.0, "a chunk whose observation is older than this is skipped (stale)")
    # = the supervisor's joint-state timeout: a stall that long makes the supervisor hold anyway
    stall_hold_s: float = param(0.25, "the node's own threads stopped for longer than this (SIGSTOP, a frozen "
                                      "host): hold at once on resume, before anything queued during the stall runs")


@dataclass
class ArmNodeConfig(_DeviceNodeConfig):
    """arm_node: the FR3 arm (hardware.franka) executing the arm part of each chunk."""

    joint_state_topic: str = param(ARM_STATE_TOPIC, "sensor_msgs/JointState topic")
    joint_state_rate_hz: float = param(200.0, "joint state publish rate")
    # A first target due within 60 ms asks for a near-instant jump the arm cannot make: the gate's velocity check
    # from the measured position then divides its tracking lag by a few ms. With 0.06 the first target is 60-127 ms
    # ahead, as in the simulated evaluation (one 67 ms action step).
    min_lead_s: float = param(0.06, "waypoints due sooner than this are dropped (no near-instant first segment)")
    # real device (hardware.franka.FrankaArmConfig); ignored in simulation
    robot_ip: str = param("", "FR3 controller (FCI) address", driver=True, arg="robot_ip",
                          arg_help="FR3 controller address (real robot)")
    device_kind: str = param(DEVICE_KINDS["arm"], "arm driver kind (jala_ros.devices.make_device)")
    driver_options: str = param("", "JSON object passed verbatim to the driver config")


@dataclass
class HandNodeConfig(_DeviceNodeConfig):
    """hand_node: the Inspire RH56 hand (hardware.inspire) following the hand part of each chunk."""

    joint_state_topic: str = param(HAND_STATE_TOPIC, "sensor_msgs/JointState topic")
    # = the Inspire driver's Modbus loop rate (rate_hz) over TCP; over RTU at 115200 baud one driver cycle takes
    # ~20 ms on the wire, so fresh hand states come at ~50 Hz whatever this rate
    joint_state_rate_hz: float = param(100.0, "joint state publish rate")
    # real device (hardware.inspire.InspireHandConfig); ignored in simulation
    transport: str = param("tcp", "Modbus transport: tcp | rtu", driver=True, arg="hand_transport",
                           choices=("tcp", "rtu"), arg_help="Inspire hand transport: tcp | rtu")
    host: str = param("127.0.0.1", "Modbus TCP address of the hand", driver=True, arg="hand_host",
                      arg_help="Inspire hand Modbus TCP address")
    port: int = param(INSPIRE_MODBUS_PORT, "Modbus TCP port of the hand", driver=True, arg="hand_port",
                      arg_help="Inspire hand Modbus TCP port")
    serial_port: str = param("/dev/ttyUSB0", "serial port (rtu)", driver=True, arg="hand_serial_port",
                             arg_help="Inspire hand serial port (rtu)")
    device_kind: str = param(DEVICE_KINDS["hand"], "hand driver kind (jala_ros.devices.make_device)")
    driver_options: str = param("", "JSON object passed verbatim to the driver config")


@dataclass
class PolicyNodeConfig:
    """policy_node: runs the JALA policy on the newest frames and joint states and publishes action chunks."""

    checkpoint: str = param("", "JALA policy checkpoint directory", arg="checkpoint",
                            arg_help="JALA policy checkpoint directory (python -m jala_policy.demo_checkpoint makes "
                                     "a tiny one)")
    device: str = param("auto", "torch device: auto | cpu | cuda | cuda:N", arg="device",
                        arg_help="policy device: auto | cpu | cuda | cuda:N")
    instruction: str = param("water the plant", "language instruction", arg="instruction",
                             arg_help="language instruction (the task config has one per task)")
    instruction_topic: str = param("/jala/instruction", "std_msgs/String topic replacing the instruction")
    image_topics: list[str] = param(["/camera/camera/color/image_raw"], "image topics, one per view (main first)")
    arm_state_topic: str = param(ARM_STATE_TOPIC, "arm joint state topic")
    hand_state_topic: str = param(HAND_STATE_TOPIC, "hand joint state topic")
    chunk_topic: str = param(CHUNK_TOPIC, "action chunk topic")
    hold_topic: str = param(HOLD_TOPIC, "latched hold topic")
    status_topic: str = param(STATUS_TOPIC, "supervisor status topic")
    execute_steps: int = param(0, "actions of a chunk executed before its successor takes over (0: the "
                                  f"checkpoint's inference.execute_steps, else {EXECUTE_STEPS})", arg="execute_steps")
    max_obs_age_s: float = param(0.5, "frames/joint states older than this are not used")
    autostart: bool = param(False, "start the policy at once", arg="autostart", cli=False,
                            arg_help="start the policy at once "
                                     "(else: ros2 service call /jala/policy/start std_srvs/srv/Trigger)")
    seed: int = param(-1, ">= 0: reproducible sampling (seed + chunk index)")
    diagnostics_rate_hz: float = param(2.0, "diagnostics publish rate")
    # a hold published during the stall may have been overwritten by the reset that followed it
    stall_stop_s: float = param(1.0, "the node's threads stopped for longer than this (SIGSTOP, a frozen host): "
                                     "stop the policy on resume")


@dataclass
class SupervisorNodeConfig:
    """supervisor_node: watches inputs, device diagnostics and estop; holds the robot on a fault."""

    camera_info_topics: list[str] = param(["/camera/camera/color/camera_info"], "camera info topics watched")
    camera_timeout_ms: float = param(250.0, "a camera silent for longer than this is a fault")
    chunk_topic: str = param(CHUNK_TOPIC, "action chunk topic")
    # chunks come every execute_steps x action_dt (8 x 66.7 ms); a chunk covers 16 x 66.7 ms = 1.07 s, after
    # which the devices hold on their own
    policy_timeout_ms: float = param(1000.0, "no chunk for longer than this while the policy runs is a fault")
    joint_state_topics: list[str] = param([ARM_STATE_TOPIC, HAND_STATE_TOPIC], "joint state topics watched")
    joint_state_timeout_ms: float = param(250.0, "joint states silent for longer than this is a fault")
    startup_grace_s: float = param(30.0, "inputs never seen yet fault only after this long")
    check_rate_hz: float = param(100.0, "watchdog check rate")
    watch_sensors_when_idle: bool = param(False, "False: camera / joint-state staleness is checked only while the "
                                                 "policy runs (device faults and estop act always)")
    fault_diagnostics_prefixes: list[str] = param(["jala/arm", "jala/hand", "jala/camera"],
                                                  "diagnostics names whose ERROR level is a fault")
    hold_topic: str = param(HOLD_TOPIC, "latched hold topic")
    hold_request_topic: str = param(HOLD_REQUEST_TOPIC, "hold request topic (std_msgs/String reason)")
    status_topic: str = param(STATUS_TOPIC, "status topic")
    recover_services: list[str] = param(["/jala/arm/recover", "/jala/hand/recover"], "services called on recover")


@dataclass
class TeleopNodeConfig:
    """teleop_node: an operator drives the robot through the same chunk topic as the policy (teleop.session)."""

    source: str = param("keyboard", "operator input: keyboard | spacemouse | webxr | avp | replay | expert "
                                    "(expert: the simulated world's scripted expert, inside sim_devices)",
                        arg="operator", arg_help="record with this operator input (keyboard | spacemouse | webxr "
                                                 "| avp | replay; expert in simulation)")
    source_options: str = param("", "JSON object for the source (e.g. {\"path\": ...} for replay, "
                                    "{\"host\": ..., \"port\": ...} for webxr, {\"ip\": ...} for avp)")
    rate_hz: float = param(15.0, "command rate (the policy's action rate)")
    deadman_s: float = param(0.2, "operator stream silent for longer than this: arm and hand hold")
    lead_s: float = param(0.0667, "extra time before a command's first waypoint (the chunk's trip over DDS; the FR3 "
                                  "gate judges speeds over the time left when it arrives)")
    dart_noise: float = param(0.0, "std (rad) of smooth noise on the executed arm targets (the recorded command "
                                   "stays clean)", arg="dart_noise",
                              arg_help="DART: std (rad) of smooth noise on the executed arm targets while recording "
                                       "(the recorded action stays the operator's clean command)")
    chunk_topic: str = param(CHUNK_TOPIC, "action chunk topic (what the devices execute)")
    command_topic: str = param(TELEOP_COMMAND_TOPIC, "the operator's clean command (what the recorder stores)")
    hold_request_topic: str = param(HOLD_REQUEST_TOPIC, "hold request topic (deadman, clutch released)")
    arm_state_topic: str = param(ARM_STATE_TOPIC, "arm joint state topic")
    hand_state_topic: str = param(HAND_STATE_TOPIC, "hand joint state topic")
    recorder: str = param("/jala/recorder", "the recorder node whose start / save / discard the buttons call")


@dataclass
class RecorderNodeConfig:
    """recorder_node: records episodes of camera frames, joint states and the operator's command into a LeRobot
    v3.0 dataset (and the raw topics into a rosbag2 per episode)."""

    dataset: str = param("", "dataset folder (created, or appended to)", arg="dataset",
                         arg_help="LeRobot v3.0 dataset folder the recorder writes (created, or appended to)")
    fps: float = param(15.0, "recording rate (frames per second; the policy's action rate is 15)")
    episodes: int = param(0, "episodes to record (0: until stopped); shown in the status line", arg="record",
                          arg_help="record this many episodes (teleoperation + recorder instead of the policy)")
    instruction: str = param("water the plant", "task instruction stored with each episode")
    instruction_topic: str = param("/jala/instruction", "std_msgs/String topic replacing the instruction")
    camera_names: list[str] = param(["camera"], "camera names (observation.images.<name>), one per image topic")
    image_topics: list[str] = param(["/camera/camera/color/image_raw"], "image topics, one per camera")
    image_width: int = param(320, "recorded image width (frames of another size are resized)")
    image_height: int = param(240, "recorded image height")
    arm_state_topic: str = param(ARM_STATE_TOPIC, "arm joint state topic")
    hand_state_topic: str = param(HAND_STATE_TOPIC, "hand joint state topic")
    command_topic: str = param(TELEOP_COMMAND_TOPIC, "the operator's clean command (sensor_msgs/JointState, 13 "
                                                     "joints): the recorded action")
    raw_bag: bool = param(True, "also write the raw topics of each episode as rosbag2 (MCAP) under <dataset>/raw")
    status_rate_hz: float = param(1.0, "status line rate (log and ~/status)")


@dataclass
class _SimWorldConfig:
    """sim_devices' own parameters (the SimWorld and its camera slots); SimDevicesConfig adds the arm_* / hand_*."""

    task: str = param("water_plant", "task world")
    variant: str = param("seen", "simulated world variant", arg="variant")
    seed: int = param(0, "simulated world seed", arg="seed")
    render_width: int = param(320, "rendered camera width")
    render_height: int = param(240, "rendered camera height")
    camera_fps: float = param(30.0, "rendered camera rate")
    world_options: str = param("", "JSON object passed verbatim to SimWorldConfig")
    camera_names: list[str] = param(["camera"], "camera slot names (node camera_<name>)")
    sim_cameras: list[str] = param([""], "world camera per slot ('' = the world's cameras in order)")
    image_topics: list[str] = param(["/camera/camera/color/image_raw"], "image topic per slot")
    info_topics: list[str] = param(["/camera/camera/color/camera_info"], "camera info topic per slot")
    operator: str = param("", "'expert': the world's scripted expert drives the robot as a teleop operator, "
                              "episode after episode (recording demonstrations); '' = none")
    operator_options: str = param("", "JSON object: teleop_node parameters for the expert operator (e.g. "
                                      "dart_noise)")


SIM_PREFIXES = {"arm_": ArmNodeConfig, "hand_": HandNodeConfig}
# simulation-only defaults of the prefixed device parameters. hand_joint_state_rate_hz: the simulated hand has no
# Modbus loop to follow: publish with headroom over the 100 Hz the graph needs (a starved 2-core machine loses a
# tick now and then)
_SIM_DEVICE_DEFAULTS = {"hand_joint_state_rate_hz": 125.0}


def _prefixed_fields(prefix: str, config_cls) -> list[tuple[str, Any, dataclasses.Field]]:
    out = []
    for f in dataclasses.fields(config_cls):
        name = prefix + f.name
        default = _SIM_DEVICE_DEFAULTS.get(name, default_of(f))
        out.append((name, f.type, param(default, f.metadata["help"])))  # no launch argument, no driver field
    return out


# sim_devices: the SimWorld's parameters, and every arm / hand parameter prefixed arm_ / hand_ (passed to the arm
# / hand node of the process without the prefix; the real-device ones among them are ignored in simulation)
SimDevicesConfig = dataclasses.make_dataclass(
    "SimDevicesConfig", [fl for p, cls in SIM_PREFIXES.items() for fl in _prefixed_fields(p, cls)],
    bases=(_SimWorldConfig,), namespace={"__doc__": "sim_devices: SimWorld + its camera, arm and hand nodes."})
SimDevicesConfig.__module__ = __name__

# executable -> its config dataclass (the parameters its process accepts)
NODE_CONFIGS: dict[str, type] = {
    "camera_node": CameraNodeConfig,
    "arm_node": ArmNodeConfig,
    "hand_node": HandNodeConfig,
    "policy_node": PolicyNodeConfig,
    "supervisor_node": SupervisorNodeConfig,
    "sim_devices": SimDevicesConfig,
    "recorder_node": RecorderNodeConfig,
    "teleop_node": TeleopNodeConfig,
}
PROCESS_PARAMETERS: dict[str, frozenset[str]] = {exe: names_of(cls) for exe, cls in NODE_CONFIGS.items()}


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
