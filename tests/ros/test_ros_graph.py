"""The ROS 2 runtime without a running graph: node specs, launch vs runner parity, packaging, DDS loopback
profile (the plain-Python runtime core is tested in tests/runtime)."""
from __future__ import annotations

import ast
import importlib.util
import subprocess
import sys
import textwrap
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import yaml

from tests.helpers import ROOT, ROS_SRC as SRC, use_ros_packages

use_ros_packages()

from jala_bringup import graph  # noqa: E402
from jala_bringup.graph import (GraphArgs, build_graph, launch_node_kwargs, params_file_content,  # noqa: E402
                                parse_command_line)
from jala_bringup.launch_support import LAUNCH_ARGUMENTS, graph_args_from_strings  # noqa: E402
from jala_bringup.ros_env import loopback_env  # noqa: E402
from jala_bringup.run import GraphProcesses  # noqa: E402

REAL = dict(sim=False, robot_ip="172.16.0.2", hand_transport="rtu", hand_serial_port="/dev/ttyUSB1")


# ------------------------------------------------------------------------------------------------ graph
@pytest.mark.parametrize("task", graph.TASKS)
def test_sim_graph_has_one_device_process(task):
    specs = build_graph(GraphArgs(task=task, checkpoint="/ckpt"))
    roles = [s.role for s in specs]
    assert roles == ["sim_devices", "policy", "supervisor"]
    sim = specs[0]
    assert sim.name is None  # several nodes in one process keep their own names
    n_cams = len(graph.load_task_config(task)["cameras"])
    assert len(sim.parameters["image_topics"]) == n_cams == len(sim.parameters["sim_cameras"])
    policy = specs[1].parameters
    assert policy["image_topics"] == sim.parameters["image_topics"]
    assert specs[2].parameters["camera_info_topics"] == sim.parameters["info_topics"]
    assert policy["checkpoint"] == "/ckpt" and policy["instruction"]


def test_wipe_board_uses_two_cameras_and_realsense_topic_names():
    specs = build_graph(GraphArgs(task="wipe_board", **REAL, camera_serials="111,222"))
    cams = [s for s in specs if s.role == "camera"]
    assert [c.parameters["serial"] for c in cams] == ["111", "222"]
    assert [c.parameters["image_topic"] for c in cams] == ["/camera/front/color/image_raw",
                                                           "/camera/side/color/image_raw"]
    water = build_graph(GraphArgs(task="water_plant", **REAL))
    cam = next(s for s in water if s.role == "camera")
    assert cam.parameters["image_topic"] == "/camera/camera/color/image_raw"  # realsense-ros default
    assert cam.parameters["info_topic"] == "/camera/camera/color/camera_info"
    roles = [s.role for s in water]
    assert roles == ["camera", "arm", "hand", "policy", "supervisor"]
    arm = next(s for s in water if s.role == "arm")
    hand = next(s for s in water if s.role == "hand")
    assert arm.parameters["robot_ip"] == "172.16.0.2"
    assert hand.parameters["transport"] == "rtu" and hand.parameters["serial_port"] == "/dev/ttyUSB1"


def test_graph_refuses_bad_arguments():
    with pytest.raises(ValueError, match="robot_ip"):
        build_graph(GraphArgs(task="water_plant", sim=False))
    with pytest.raises(ValueError, match="hand_transport"):
        GraphArgs(task="water_plant", hand_transport="usb")
    with pytest.raises(ValueError, match="unknown task"):
        GraphArgs(task="fold_laundry")
    with pytest.raises(ValueError, match="serial"):
        build_graph(GraphArgs(task="wipe_board", **REAL, camera_serials="only_one"))
    with pytest.raises(ValueError, match="empty lists"):
        build_graph(GraphArgs(task="water_plant", overrides={"policy": {"image_topics": []}}))


@pytest.mark.parametrize("task", graph.TASKS)
@pytest.mark.parametrize("sim", [True, False])
def test_runner_commands_and_launch_nodes_carry_the_same_specs(task, sim, tmp_path):
    """The runner's command lines + params files and the launch_ros Node arguments come from the same specs."""
    args = GraphArgs(task=task, checkpoint="/ckpt", **({} if sim else REAL))
    specs = build_graph(args)
    procs = GraphProcesses(specs, loopback_env(), tmp_path, python="python3")
    for spec, cmd, pfile in procs.commands():
        pfile.write_text(yaml.safe_dump(params_file_content(spec)))
        parsed = parse_command_line(cmd)
        kw = launch_node_kwargs(spec)
        assert parsed["module"] == f"{kw['package']}.{kw['executable']}"
        assert parsed["name"] == kw.get("name")
        assert parsed["namespace"] == kw["namespace"]
        assert parsed["remappings"] == kw["remappings"]
        from_file = yaml.safe_load(Path(parsed["params_file"]).read_text())["/**"]["ros__parameters"]
        assert from_file == kw["parameters"][0] == spec.parameters
        assert importlib.util.find_spec(parsed["module"]) is not None


def test_launch_argument_defaults_give_the_runner_graph():
    """Launch files convert their (string) arguments to the same GraphArgs the runner builds."""
    from jala_bringup.cli import build_parser, graph_args_from_options

    values = {k: v for k, (v, _) in LAUNCH_ARGUMENTS.items()}
    values["checkpoint"] = "/ckpt"
    for task in graph.TASKS:
        from_launch = build_graph(graph_args_from_strings(task, values))
        from_runner = build_graph(GraphArgs(task=task, checkpoint="/ckpt"))
        from_cli = build_graph(graph_args_from_options(build_parser().parse_args([task, "--checkpoint", "/ckpt"])))
        assert from_launch == from_runner == from_cli
    real = dict(values, sim="false", robot_ip="10.0.0.2", camera_serials="1,2", hand_host="10.0.0.9",
                hand_port="502", hand_transport="tcp")
    specs = build_graph(graph_args_from_strings("wipe_board", real))
    assert [s.parameters["serial"] for s in specs if s.role == "camera"] == ["1", "2"]
    hand = next(s for s in specs if s.role == "hand").parameters
    assert (hand["host"], hand["port"], hand["transport"]) == ("10.0.0.9", 502, "tcp")
    cli = graph_args_from_options(build_parser().parse_args(
        ["wipe_board", "--real", "--robot-ip", "10.0.0.2", "--camera-serials", "1,2", "--hand-host", "10.0.0.9",
         "--hand-port", "502", "--hand-transport", "tcp", "--checkpoint", "/ckpt"]))
    assert build_graph(cli) == specs


# ------------------------------------------------------------------------------- parameters, declared once
def _all_fields():
    import dataclasses

    from jala_ros.parameters import NODE_CONFIGS

    return {exe: {f.name: f for f in dataclasses.fields(cls)} for exe, cls in NODE_CONFIGS.items()}


def test_launch_arguments_cli_options_and_graph_args_are_generated_from_the_node_dataclasses():
    """Every launch argument (but the launch's own) and every runner option of a node parameter is a node config
    field's ``arg`` metadata, maps onto that existing field, and is a GraphArgs field; nothing else."""
    import dataclasses

    from jala_bringup.arguments import ROLE_EXECUTABLES, graph_arguments
    from jala_bringup.cli import build_parser
    from jala_bringup.launch_support import LAUNCH_OWN_ARGUMENTS

    fields = _all_fields()
    marked = {f.metadata["arg"]: (exe, name) for exe, fs in fields.items() for name, f in fs.items()
              if f.metadata.get("arg")}
    args = graph_arguments()
    assert {a.name for a in args} == set(marked)
    for a in args:
        exe = ROLE_EXECUTABLES[a.role]
        assert marked[a.name] == (exe, a.field) and a.field in fields[exe]
        assert a.default == fields[exe][a.field].default or a.default == fields[exe][a.field].default_factory()
    assert set(LAUNCH_ARGUMENTS) == set(LAUNCH_OWN_ARGUMENTS) | set(marked)
    assert set(marked) >= {"checkpoint", "device", "instruction", "autostart", "seed", "variant", "robot_ip",
                           "hand_transport", "hand_host", "hand_port", "hand_serial_port", "camera_serials"}
    assert {f.name for f in dataclasses.fields(GraphArgs)} == {"task", "sim", "overrides"} | set(marked)
    options = {a.dest for a in build_parser()._actions}
    assert {a.name for a in args if a.cli} <= options
    assert "autostart" not in options  # a launch argument only (the runner starts the policy itself)
    # ROS parameter names = driver config field names (no alias table): the hand's host/port
    assert (marked["hand_host"], marked["hand_port"]) == (("hand_node", "host"), ("hand_node", "port"))


def test_changing_a_dataclass_default_changes_launch_cli_and_node_parameters(monkeypatch):
    """One default, written once: the hand's Modbus port default (from embodiment) reaches the launch argument's
    description, the runner option's help, the node's declared default and the graph's parameters."""
    from embodiment import INSPIRE_MODBUS_PORT
    from jala_bringup.arguments import launch_arguments
    from jala_bringup.cli import build_parser
    from jala_ros import parameters

    port = _all_fields()["hand_node"]["port"]
    assert port.default == INSPIRE_MODBUS_PORT == parameters.defaults_of(parameters.HandNodeConfig)["port"]
    # 0: the checkpoint's inference.execute_steps, else the runtime's default, which the description names
    steps = _all_fields()["policy_node"]["execute_steps"]
    assert steps.default == 0 and f"else {__import__('embodiment').EXECUTE_STEPS}" in str(steps.metadata)
    monkeypatch.setattr(port, "default", 5020)
    assert "5020" in launch_arguments()["hand_port"][1]
    assert "5020" in build_parser().format_help()
    assert parameters.defaults_of(parameters.HandNodeConfig)["port"] == 5020
    # not given anywhere: the graph leaves it to the node, which declares the dataclass default
    hand = next(s for s in build_graph(GraphArgs(task="water_plant", **REAL)) if s.role == "hand").parameters
    assert "port" not in hand
    assert build_graph(GraphArgs(task="water_plant", **REAL, hand_port=6001))[2].parameters["port"] == 6001


def test_task_configs_use_node_field_names_only():
    """config/*.yaml sections are checked against the dataclass fields; renamed parameters are errors."""
    with pytest.raises(graph.ConfigError, match="'width'.*color_width"):
        graph.check_task_config({"camera": {"width": 640}}, "x.yaml")
    with pytest.raises(graph.ConfigError, match="hand_host"):
        graph.check_task_config({"hand": {"hand_host": "10.0.0.1"}}, "x.yaml")
    graph.check_task_config({"hand": {"host": "10.0.0.1", "port": 502}}, "x.yaml")


def test_launch_files_build_a_launch_description():
    launch_dir = SRC / "jala_bringup" / "launch"
    files = sorted(launch_dir.glob("*.launch.py"))
    assert [f.name for f in files] == ["put_three_obj.launch.py", "water_plant.launch.py", "wipe_board.launch.py"]
    for f in files:
        ast.parse(f.read_text())  # at least valid Python everywhere
    if importlib.util.find_spec("launch_ros") is None:
        pytest.skip("launch_ros is not installed (ROS 2 Jazzy install needed to evaluate launch files)")
    from launch import LaunchDescription

    for f in files:
        spec = importlib.util.spec_from_file_location(f.stem.replace(".", "_"), f)
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        assert isinstance(mod.generate_launch_description(), LaunchDescription)


def test_top_level_launch_folder_is_not_a_python_package():
    assert (ROOT / "launch" / "run_task.py").exists()
    assert not (ROOT / "launch" / "__init__.py").exists()  # would shadow ROS's `launch` package


# ---------------------------------------------------------------------------------------------- packaging
@pytest.mark.parametrize("pkg", ["jala_ros", "jala_bringup"])
def test_ament_python_package_layout(pkg):
    d = SRC / pkg
    root = ET.parse(d / "package.xml").getroot()
    assert root.get("format") == "3" and root.findtext("name") == pkg
    assert root.find("export").findtext("build_type") == "ament_python"
    deps = {e.text for e in root.findall("exec_depend")}
    assert {"rclpy", "std_msgs", "sensor_msgs", "trajectory_msgs", "std_srvs", "diagnostic_msgs"} <= deps
    if pkg == "jala_bringup":
        assert {"launch", "launch_ros", "jala_ros"} <= deps
    assert (d / "resource" / pkg).exists() and (d / pkg / "__init__.py").exists()
    cfg = (d / "setup.cfg").read_text()
    assert f"$base/lib/{pkg}" in cfg
    setup = (d / "setup.py").read_text()
    assert "resource_index/packages" in setup and "package.xml" in setup


def test_console_scripts_exist_for_every_node():
    tree = ast.parse((SRC / "jala_ros" / "setup.py").read_text())
    exe = next(n.value for n in ast.walk(tree) if isinstance(n, ast.Assign) and n.targets[0].id == "executables")
    names = ast.literal_eval(exe)
    used = {s.executable for t in graph.TASKS for sim in (True, False)
            for s in build_graph(GraphArgs(task=t, **({} if sim else REAL)))}
    assert used <= set(names)
    for name in names:
        mod = importlib.import_module(f"jala_ros.{name}")
        assert callable(mod.main)


def test_device_factory_builds_the_real_driver_configs():
    """Node parameters reach the real drivers' config dataclasses (no hardware is contacted)."""
    from jala_ros import devices

    pytest.importorskip("hardware.inspire.driver")
    from jala_ros.parameters import CameraNodeConfig, HandNodeConfig, defaults_of, driver_params

    hand_p = {**defaults_of(HandNodeConfig), "transport": "rtu", "host": "10.0.0.9", "port": 502, "serial_port": "/dev/ttyUSB3"}
    assert driver_params(HandNodeConfig, hand_p) == {"transport": "rtu", "host": "10.0.0.9", "port": 502,
                                                     "serial_port": "/dev/ttyUSB3"}
    hand = devices.make_device("hand", "", driver_params(HandNodeConfig, hand_p), '{"device_id": 2}')
    assert (hand.config.transport, hand.config.host, hand.config.port, hand.config.serial_port,
            hand.config.device_id) == ("rtu", "10.0.0.9", 502, "/dev/ttyUSB3", 2)
    from hardware.realsense import RealSenseCameraConfig

    cam = next(s for s in build_graph(GraphArgs(task="water_plant", **REAL)) if s.role == "camera").parameters
    cam = {**defaults_of(CameraNodeConfig), **cam, "serial": "f0123", "camera_name": "front"}
    cfg = devices.build_config(RealSenseCameraConfig, driver_params(CameraNodeConfig, cam))  # a valid profile
    assert (cfg.serial, cfg.name, cfg.color_width, cfg.color_height, cfg.color_fps, cfg.enable_depth) == (
        "f0123", "front", cam["color_width"], cam["color_height"], cam["color_fps"], False)
    from hardware.franka import FrankaArmConfig

    assert devices.build_config(FrankaArmConfig, {"robot_ip": "172.16.0.9"}).robot_ip == "172.16.0.9"
    with pytest.raises(ValueError, match="no option"):
        devices.build_config(FrankaArmConfig, {}, '{"warp_speed": 9}')
    assert devices.pick_sim_cameras(["camera_front", "camera_side"], ["", ""], 2) == ["camera_front", "camera_side"]
    assert devices.pick_sim_cameras(["camera_front", "camera_side"], ["camera_side"], 1) == ["camera_side"]
    with pytest.raises(ValueError, match="no camera"):
        devices.pick_sim_cameras(["camera_front"], ["wrist"], 1)


# ---------------------------------------------------------------------------------------------- DDS env
def test_loopback_profile_and_env():
    env = loopback_env(42, base={"ROS_LOCALHOST_ONLY": "1"})
    assert env["ROS_DOMAIN_ID"] == "42" and "ROS_LOCALHOST_ONLY" not in env
    xml = Path(env["FASTRTPS_DEFAULT_PROFILES_FILE"])
    assert xml == Path(env["FASTDDS_DEFAULT_PROFILES_FILE"]) and xml.exists()
    root = ET.parse(xml).getroot()
    ns = {"f": "http://www.eprosima.com/XMLSchemas/fastRTPS_Profiles"}
    addrs = [a.text for a in root.iterfind(".//f:interfaceWhiteList/f:address", ns)]
    assert addrs == ["127.0.0.1"]
    assert root.find(".//f:useBuiltinTransports", ns).text == "false"
    # shared memory carries camera images: several 1920x1080 RGB frames fit a segment (with two, a 30 fps stream
    # arrived at 6 Hz), and no explicit default locator list hides the shared-memory locators (images then went
    # over UDP and were mostly lost)
    shm = [t for t in root.iterfind(".//f:transport_descriptor", ns) if t.find("f:type", ns).text == "SHM"]
    assert len(shm) == 1 and int(shm[0].find("f:segment_size", ns).text) >= 8 * 1920 * 1080 * 3
    assert root.find(".//f:defaultUnicastLocatorList", ns) is None
    with pytest.raises(ValueError):
        loopback_env(500)


def test_dds_sockets_bind_to_loopback_only(tmp_path):
    """A node process with the loopback environment talks to itself over DDS and has UDP sockets on 127.0.0.1
    only (what `ss -unap` shows, read from /proc)."""
    script = tmp_path / "probe.py"
    script.write_text(textwrap.dedent(f"""
        import sys, time
        sys.path[:0] = [{str(SRC / 'jala_ros')!r}, {str(SRC / 'jala_bringup')!r}]
        from jala_bringup.ros_env import udp_sockets
        import rclpy
        from std_msgs.msg import String
        rclpy.init()
        n = rclpy.create_node("probe")
        got = []
        n.create_subscription(String, "loop", lambda m: got.append(m.data), 10)
        pub = n.create_publisher(String, "loop", 10)
        end = time.time() + 10
        while not got and time.time() < end:
            pub.publish(String(data="x"))
            rclpy.spin_once(n, timeout_sec=0.05)
        print("GOT", len(got))
        print("SOCKETS", " ".join(udp_sockets()))
    """))
    env = loopback_env(91)
    out = subprocess.run([sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    lines = dict(line.split(" ", 1) for line in out.stdout.splitlines() if line.startswith(("GOT", "SOCKETS")))
    assert int(lines["GOT"]) > 0
    socks = lines["SOCKETS"].split()
    assert socks, "no UDP sockets found"
    assert all(s.startswith("127.0.0.1:") for s in socks), socks


def test_monotonic_stamps_map_onto_the_ros_clock_without_scheduler_jitter():
    from jala_ros.node_utils import MonotonicToRosTime

    class FakeNode:  # ROS clock = monotonic + 1000 s; optionally slow to read (a preempted thread)
        slow = 0.0

        def get_clock(self):
            return self

        def now(self):
            t = time.monotonic() + 1000.0
            time.sleep(self.slow)
            return type("T", (), {"nanoseconds": int(t * 1e9)})()

    node = FakeNode()
    to_ros = MonotonicToRosTime(node)
    m = time.monotonic()
    assert to_ros(m) == pytest.approx(m + 1000.0, abs=2e-4)
    node.slow = 0.005  # every reading now brackets 5 ms: the earlier offset is kept, not shifted by ~2.5 ms
    assert to_ros(m) == pytest.approx(m + 1000.0, abs=2e-4)
    fresh = MonotonicToRosTime(node)  # without an earlier offset the bracketed reading is still used
    assert fresh(m) == pytest.approx(m + 1000.0, abs=0.01)
