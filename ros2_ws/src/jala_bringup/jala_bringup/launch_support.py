"""Launch files -> node specs from ``jala_bringup.graph`` -> ``launch_ros.actions.Node`` actions.

Imported by ``launch/<task>.launch.py``; needs ``launch`` and ``launch_ros`` (a ROS 2 Jazzy install) only in
``generate_task_launch_description``. The launch arguments that set node parameters (checkpoint, robot_ip,
hand_host, ...) are generated from the node config dataclasses (``jala_bringup.arguments``); the ones here are
those of the launch itself.
"""
from __future__ import annotations

import dataclasses

from jala_ros.dds_security import exposure_warning

from .arguments import graph_arguments, launch_arguments, truthy
from .graph import GraphArgs, build_graph, launch_node_kwargs
from .ros_env import loopback_env

_SIM_DEFAULT = next(f.default for f in dataclasses.fields(GraphArgs) if f.name == "sim")

# the launch's own arguments: launch argument -> (default, description)
LAUNCH_OWN_ARGUMENTS = {
    "sim": (str(_SIM_DEFAULT).lower(), "true: simulated task world (one sim_devices process); false: the real robot"),
    "loopback_dds": ("true", "restrict DDS to 127.0.0.1 with jala_bringup's Fast DDS profile"),
    "enclave_root": ("", "SROS2: give each node the enclave <enclave_root>/<node name> (e.g. /jala); needs "
                         "ROS_SECURITY_KEYSTORE, ROS_SECURITY_ENABLE=true, ROS_SECURITY_STRATEGY=Enforce (see "
                         "ros2_ws/README.md, 'Security')"),
}


def all_launch_arguments() -> dict[str, tuple[str, str]]:
    """launch argument -> (default, description): the launch's own, then the node-parameter ones."""
    return {**LAUNCH_OWN_ARGUMENTS, **launch_arguments()}


LAUNCH_ARGUMENTS = all_launch_arguments()


def graph_args_from_strings(task: str, values: dict[str, str]) -> GraphArgs:
    """GraphArgs from launch argument strings (the same conversion for every launch file; '' = not given)."""
    return GraphArgs(task=task, sim=truthy(values.get("sim", LAUNCH_OWN_ARGUMENTS["sim"][0])),
                     **{a.name: a.parse(values.get(a.name, "")) for a in graph_arguments()})


def generate_task_launch_description(task: str):
    from launch import LaunchDescription
    from launch.actions import DeclareLaunchArgument, LogInfo, OpaqueFunction, SetEnvironmentVariable
    from launch.substitutions import LaunchConfiguration
    from launch_ros.actions import Node

    arguments = all_launch_arguments()

    def _nodes(context, *args, **kwargs):
        values = {name: LaunchConfiguration(name).perform(context) for name in arguments}
        actions = []
        if truthy(values["loopback_dds"]):
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
                for name, (default, desc) in arguments.items()]
    return LaunchDescription([*declared, OpaqueFunction(function=_nodes)])
