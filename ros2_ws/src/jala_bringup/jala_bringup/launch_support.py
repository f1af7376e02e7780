"""Launch files -> node specs from ``jala_bringup.graph`` -> ``launch_ros.actions.Node`` actions.

Imported by ``launch/<task>.launch.py``; needs ``launch`` and ``launch_ros`` (a ROS 2 Jazzy install).
"""
from __future__ import annotations

from jala_ros.dds_security import exposure_warning

from .graph import GraphArgs, build_graph, launch_node_kwargs
from .ros_env import loopback_env

# launch argument -> (default, description)
LAUNCH_ARGUMENTS = {
    "sim": ("true", "true: simulated task world (one sim_devices process); false: the real robot"),
    "checkpoint": ("", "JALA policy checkpoint directory (python -m jala_policy.demo_checkpoint makes a tiny one)"),
    "device": ("auto", "policy device: auto | cpu | cuda | cuda:N"),
    "instruction": ("", "language instruction ('' = the task's)"),
    "autostart": ("false", "start the policy at once "
                           "(else: ros2 service call /jala/policy/start std_srvs/srv/Trigger)"),
    "seed": ("0", "simulated world seed"),
    "variant": ("seen", "simulated world variant"),
    "robot_ip": ("", "FR3 controller address (real robot)"),
    "hand_transport": ("tcp", "Inspire hand transport: tcp | rtu"),
    "hand_host": ("127.0.0.1", "Inspire hand Modbus TCP address"),
    "hand_port": ("6000", "Inspire hand Modbus TCP port"),
    "hand_serial_port": ("/dev/ttyUSB0", "Inspire hand serial port (rtu)"),
    "camera_serials": ("", "comma-separated RealSense serials, one per camera of the task (real robot)"),
    "loopback_dds": ("true", "restrict DDS to 127.0.0.1 with jala_bringup's Fast DDS profile"),
    "enclave_root": ("", "SROS2: give each node the enclave <enclave_root>/<node name> (e.g. /jala); needs "
                         "ROS_SECURITY_KEYSTORE, ROS_SECURITY_ENABLE=true, ROS_SECURITY_STRATEGY=Enforce (see "
                         "ros2_ws/README.md, 'Security')"),
}


def _truthy(text: str) -> bool:
    t = text.strip().lower()
    if t in ("true", "1", "yes", "on"):
        return True
    if t in ("false", "0", "no", "off", ""):
        return False
    raise ValueError(f"expected true/false, got {text!r}")


def graph_args_from_strings(task: str, values: dict[str, str]) -> GraphArgs:
    """GraphArgs from launch argument strings (the same conversion for every launch file)."""
    return GraphArgs(
        task=task, sim=_truthy(values["sim"]), checkpoint=values["checkpoint"], device=values["device"],
        instruction=values["instruction"], autostart=_truthy(values["autostart"]), seed=int(values["seed"]),
        variant=values["variant"], robot_ip=values["robot_ip"], hand_transport=values["hand_transport"],
        hand_host=values["hand_host"], hand_port=int(values["hand_port"]),
        hand_serial_port=values["hand_serial_port"], camera_serials=values["camera_serials"])


def generate_task_launch_description(task: str):
    from launch import LaunchDescription
    from launch.actions import DeclareLaunchArgument, LogInfo, OpaqueFunction, SetEnvironmentVariable
    from launch.substitutions import LaunchConfiguration
    from launch_ros.actions import Node

    def _nodes(context, *args, **kwargs):
        values = {name: LaunchConfiguration(name).perform(context) for name in LAUNCH_ARGUMENTS}
        actions = []
        if _truthy(values["loopback_dds"]):
            env = loopback_env()
            for key in ("FASTRTPS_DEFAULT_PROFILES_FILE", "FASTDDS_DEFAULT_PROFILES_FILE",
                        "ROS_AUTOMATIC_DISCOVERY_RANGE", "RMW_IMPLEMENTATION"):
                actions.append(SetEnvironmentVariable(key, env[key]))
        else:
            warning = exposure_warning()
            if warning:
                actions.append(LogInfo(msg=warning))
        for spec in build_graph(graph_args_from_strings(task, values)):
            actions.append(Node(**launch_node_kwargs(spec, values["enclave_root"])))
        return actions

    declared = [DeclareLaunchArgument(name, default_value=default, description=desc)
                for name, (default, desc) in LAUNCH_ARGUMENTS.items()]
    return LaunchDescription([*declared, OpaqueFunction(function=_nodes)])
