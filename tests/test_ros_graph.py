"""The ROS 2 runtime without a running graph: node specs, launch vs runner parity, packaging, DDS loopback
profile, and the plain-Python runtime logic (chunk validation, waypoint alignment, watchdog, hand player)."""
from __future__ import annotations

import ast
import importlib.util
import subprocess
import sys
import textwrap
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
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
from jala_ros.core import (CHUNK_JOINT_NAMES, ChunkError, HandPlayer, TimedChunk, Watchdog,  # noqa: E402
                           next_inference_time)

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
        GraphArgs(task="water_plant", sim=False)
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
    values = {k: v for k, (v, _) in LAUNCH_ARGUMENTS.items()}
    values["checkpoint"] = "/ckpt"
    for task in graph.TASKS:
        from_launch = build_graph(graph_args_from_strings(task, values))
        from_runner = build_graph(GraphArgs(task=task, checkpoint="/ckpt", device="auto", seed=0, variant="seen"))
        assert from_launch == from_runner
    real = dict(values, sim="false", robot_ip="10.0.0.2", camera_serials="1,2")
    specs = build_graph(graph_args_from_strings("wipe_board", real))
    assert [s.parameters["serial"] for s in specs if s.role == "camera"] == ["1", "2"]


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
    hand = devices.make_real_hand({"transport": "rtu", "hand_host": "10.0.0.9", "hand_port": 502,
                                   "serial_port": "/dev/ttyUSB3"}, '{"device_id": 2}')
    assert (hand.config.transport, hand.config.serial_port, hand.config.device_id) == ("rtu", "/dev/ttyUSB3", 2)
    from hardware.realsense import RealSenseCameraConfig

    cam = next(s for s in build_graph(GraphArgs(task="water_plant", **REAL)) if s.role == "camera").parameters
    cfg = devices.build_config(RealSenseCameraConfig, {"serial": "f0123", "camera_name": "front", "width": cam["width"],
                                                       "height": cam["height"], "fps": cam["fps"],
                                                       "enable_depth": False})  # the configured profile is valid
    assert (cfg.serial, cfg.name, cfg.color_width, cfg.color_height, cfg.color_fps, cfg.enable_depth) == (
        "f0123", "front", cam["width"], cam["height"], cam["fps"], False)
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


# ---------------------------------------------------------------------------------------------- core logic
def test_chunk_validation_names_the_bad_value():
    names = CHUNK_JOINT_NAMES
    pos = np.zeros((16, 13))
    tfs = np.arange(1, 17) / 15
    ok = TimedChunk.from_parts(100.0, tfs, pos, names)
    assert np.allclose(ok.times, 100.0 + tfs)
    pos[3, 8] = np.nan
    with pytest.raises(ChunkError, match=r"waypoint 3 joint inspire_ring"):
        TimedChunk.from_parts(100.0, tfs, pos, names)
    with pytest.raises(ChunkError, match="increasing"):
        TimedChunk.from_parts(100.0, tfs[::-1], np.zeros((16, 13)), names)
    with pytest.raises(ChunkError, match="lacks joints"):
        TimedChunk.from_parts(100.0, tfs, np.zeros((16, 2)), ("a", "b")).select(("fr3_joint1",))


def test_past_waypoints_are_dropped_and_times_made_relative():
    tfs = np.arange(1, 17) / 15
    chunk = TimedChunk.from_parts(100.0, tfs, np.arange(16 * 13, dtype=float).reshape(16, 13), CHUNK_JOINT_NAMES)
    now = 100.0 + 0.2  # 3 waypoints (0.067, 0.133, 0.2) are due
    rel, keep, dropped = chunk.upcoming(now, min_lead=0.0)
    assert dropped == 3 and keep[0] == 3 and np.allclose(rel, tfs[3:] - 0.2)
    rel, keep, dropped = chunk.upcoming(now, min_lead=0.05)  # 0.2667 is only 0.0667 ahead: kept; 0.25 lead drops it
    assert dropped == 3
    rel, keep, dropped = chunk.upcoming(100.0 + 2.0)
    assert keep.size == 0 and dropped == 16


def test_next_chunk_is_started_one_latency_before_the_switch_point():
    # chunk from an observation at t=10 s, 15 Hz, switch after 8 actions (t = 10.533), 120 ms latency
    assert next_inference_time(10.0, 1 / 15, 8, 0.12) == pytest.approx(10.0 + 8 / 15 - 0.12)
    assert next_inference_time(10.0, 1 / 15, 8, 5.0) == 10.0  # slower than a chunk: start at once


def test_watchdog_detects_stale_inputs_and_respects_activation():
    wd = Watchdog(now=0.0)
    wd.add("camera", 0.25, now=0.0, grace=1.0)
    wd.add("policy", 1.0, active=False, now=0.0)
    assert wd.check(now=1.2) == []  # in the start-up grace
    faults = wd.check(now=1.3)
    assert [f.source for f in faults] == ["camera"] and "no message yet" in faults[0].reason
    wd.feed("camera", t=2.0)
    assert wd.check(now=2.2) == []
    faults = wd.check(now=2.3)
    assert faults and "300 ms ago" in faults[0].reason
    wd.feed("camera", t=5.0)
    wd.set_active("policy", True, now=5.0)
    assert wd.check(now=5.2) == [] and [f.source for f in wd.check(now=6.1)] == ["camera", "policy"]
    wd.set_active("camera", False)
    assert [f.source for f in wd.check(now=6.1)] == ["policy"]
    wd.set_active("camera", True, now=6.1, keep_last=True)  # stale while inactive: faults at once
    assert "camera" in [f.source for f in wd.check(now=6.1)]


def test_hand_player_commands_each_target_during_its_interval():
    """With the simulated hand (not running physics), the player sets target i during (t[i-1], t[i]]."""
    pytest.importorskip("hardware.sim.world")
    from hardware.sim.world import SimWorld, SimWorldConfig

    world = SimWorld(SimWorldConfig(task="water_plant", render_width=32, render_height=24))
    try:
        player = HandPlayer(world.hand)
        t0 = time.monotonic()
        targets = np.array([[900.0] * 6, [700.0] * 6, [500.0] * 6])
        player.load(t0 + np.array([0.15, 0.30, 0.45]), targets)
        seen = []
        end = t0 + 0.6
        while time.monotonic() < end:
            seen.append((time.monotonic() - t0, float(world.hand_ctrl.target[0])))
            time.sleep(0.005)
        player.close()
    finally:
        world.close()

    def target_at(t):
        return next(v for tt, v in seen if tt >= t)

    assert target_at(0.05) == 900.0 and target_at(0.22) == 700.0 and target_at(0.38) == 500.0
    assert seen[-1][1] == 500.0  # the last target stays commanded


def test_demo_checkpoint_statistics_centre_on_home():
    from jala_policy.demo_checkpoint import FR3_HOME, demo_action_stats, resolve_centre

    torch = pytest.importorskip("torch")
    assert np.allclose(FR3_HOME, [0, -np.pi / 4, 0, -3 * np.pi / 4, 0, np.pi / 2, np.pi / 4])
    stats = demo_action_stats(arm_range=0.01, hand_range=100.0)
    out = stats.unnormalize(torch.tensor([[-1.0] * 13, [0.0] * 13, [1.0] * 13], dtype=torch.float64)).numpy()
    assert np.allclose(out[1, :7], FR3_HOME) and np.allclose(out[1, 7:], 500.0)
    assert np.allclose(out[2] - out[0], [0.02] * 7 + [200.0] * 6)
    with pytest.raises(ValueError):
        demo_action_stats(hand_range=600.0)  # would leave 0..1000
    with pytest.raises(ValueError):
        resolve_centre("1,2,3")


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
