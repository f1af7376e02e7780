"""Network exposure: the runtime warns at start when DDS leaves this machine without DDS Security, and the launch
files can put every node in its own SROS2 enclave."""
import pytest

from tests.helpers import use_ros_packages

use_ros_packages()

from jala_bringup.graph import GraphArgs, build_graph, launch_node_kwargs  # noqa: E402
from jala_bringup.ros_env import loopback_env  # noqa: E402
from jala_ros.dds_security import exposure_warning  # noqa: E402

pytestmark = pytest.mark.safety


def test_loopback_profile_and_localhost_discovery_need_no_warning():
    assert exposure_warning(loopback_env(5, base={})) == ""
    assert exposure_warning({"ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST"}) == ""


@pytest.mark.parametrize("env", [{}, {"ROS_AUTOMATIC_DISCOVERY_RANGE": "SUBNET"},
                                 {"ROS_SECURITY_ENABLE": "true", "ROS_SECURITY_STRATEGY": "Permissive"},
                                 {"FASTRTPS_DEFAULT_PROFILES_FILE": "/etc/my_profile.xml"}])
def test_open_dds_without_enforced_security_warns(env):
    w = exposure_warning(env)
    assert "WARNING" in w and "anyone on this network" in w and "SROS2" in w


def test_enforced_sros2_needs_no_warning():
    assert exposure_warning({"ROS_SECURITY_ENABLE": "true", "ROS_SECURITY_STRATEGY": "Enforce"}) == ""


def test_launch_nodes_get_one_enclave_each():
    specs = build_graph(GraphArgs(task="water_plant", sim=False, robot_ip="172.16.0.2"))
    enclaves = [launch_node_kwargs(s, "/jala")["ros_arguments"] for s in specs]
    assert all(e[0] == "--enclave" for e in enclaves)
    names = [e[1] for e in enclaves]
    assert len(set(names)) == len(specs) and "/jala/arm" in names and "/jala/policy" in names
    assert "ros_arguments" not in launch_node_kwargs(specs[0])  # off by default
