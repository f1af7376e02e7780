"""Expected errors of the runner, the node processes and the task configuration are one clear line for the
user (exit code 2), never a traceback; the runner leaves no work folder behind."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("rclpy")

from tests.helpers import ROOT, use_ros_packages  # noqa: E402

use_ros_packages()

from jala_bringup import graph  # noqa: E402
from jala_bringup.ros_env import loopback_env  # noqa: E402
from jala_bringup.run import python_path  # noqa: E402

RUN = [sys.executable, str(ROOT / "launch" / "run_task.py")]


def _one_line_error(r: subprocess.CompletedProcess, *words: str) -> str:
    err = r.stderr.strip()
    assert r.returncode == 2, (r.returncode, r.stdout, r.stderr)
    assert "Traceback" not in r.stdout + r.stderr, r.stderr
    lines = [ln for ln in err.splitlines() if ln.strip() and not ln.startswith("usage:")]
    assert len(lines) == 1, err
    for w in words:
        assert w in lines[0], lines[0]
    return lines[0]


def _jala_tmp_dirs() -> set[str]:
    return {p.name for p in Path("/tmp").glob("jala_*")}


@pytest.mark.parametrize("value", ["300", "-1", "abc"])
def test_domain_id_out_of_range_is_one_line(value):
    r = subprocess.run([*RUN, "water_plant", "--domain-id", value], capture_output=True, text=True, timeout=60)
    _one_line_error(r, "--domain-id", value)


def test_missing_checkpoint_is_one_line_and_nothing_starts(tmp_path):
    before = _jala_tmp_dirs()
    r = subprocess.run([*RUN, "water_plant", "--checkpoint", str(tmp_path / "nope")], capture_output=True, text=True,
                       timeout=60)
    _one_line_error(r, str(tmp_path / "nope"), "checkpoint")
    assert _jala_tmp_dirs() == before


def test_print_commands_leaves_no_work_folder():
    before = _jala_tmp_dirs()
    r = subprocess.run([*RUN, "water_plant", "--print-commands"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and "jala_ros.policy_node" in r.stdout, r.stderr
    assert _jala_tmp_dirs() == before


def _copy_config(tmp_path: Path, monkeypatch) -> Path:
    d = tmp_path / "config"
    shutil.copytree(graph.config_dir(), d)
    monkeypatch.setattr(graph, "config_dir", lambda: d)
    return d


@pytest.mark.parametrize("section, key", [("supervisor", "camera_timout_ms"), ("arm", "max_chunk_agee_s"),
                                          ("sim", "render_widht")])
def test_a_typo_in_the_task_config_is_an_error_naming_the_key(tmp_path, monkeypatch, section, key):
    import yaml

    d = _copy_config(tmp_path, monkeypatch)
    cfg = yaml.safe_load((d / "common.yaml").read_text())
    cfg[section][key] = 1.0
    (d / "common.yaml").write_text(yaml.safe_dump(cfg))
    with pytest.raises(graph.ConfigError) as info:
        graph.build_graph(graph.GraphArgs(task="water_plant"))
    msg = str(info.value)
    assert key in msg and "common.yaml" in msg and "allowed" in msg, msg


def test_the_shipped_configs_are_valid():
    for task in graph.TASKS:
        assert graph.build_graph(graph.GraphArgs(task=task))


def _node(module: str, *ros_args: str, timeout: float = 60.0) -> subprocess.CompletedProcess:
    env = loopback_env(99)
    env["PYTHONPATH"] = python_path(env)
    return subprocess.run([sys.executable, "-m", module, "--ros-args", *ros_args], capture_output=True, text=True,
                          env=env, timeout=timeout)


def test_an_unknown_node_parameter_stops_the_node_with_one_line():
    r = _node("jala_ros.supervisor_node", "-p", "camera_timout_ms:=100.0")
    line = _one_line_error(r, "camera_timout_ms", "camera_timeout_ms")
    assert "did you mean" in line


def test_an_unknown_key_in_a_params_file_stops_the_sim_devices_process(tmp_path):
    import yaml

    pfile = tmp_path / "p.yaml"
    pfile.write_text(yaml.safe_dump({"/**": {"ros__parameters": {"arm_stall_hold": 1.0}}}))
    r = _node("jala_ros.sim_devices", "--params-file", str(pfile))
    _one_line_error(r, "arm_stall_hold", "arm_stall_hold_s")


def test_a_corrupted_checkpoint_stops_the_policy_node_with_one_line(tmp_path):
    from jala_bringup.run import ensure_checkpoint

    ckpt = Path(ensure_checkpoint(None, 1, tmp_path, loopback_env(99)))
    text = (ckpt / "config.json").read_text()
    (ckpt / "config.json").write_text(text[:40])
    r = _node("jala_ros.policy_node", "-p", f"checkpoint:={ckpt}", "-p", "device:=cpu")
    _one_line_error(r, str(ckpt / "config.json"), "line")


def test_the_shipped_params_reach_every_node_unchanged():
    """graph parameters are exactly names the nodes declare (ROS parameter names = the nodes' own)."""
    from jala_ros.parameters import PROCESS_PARAMETERS

    for task in graph.TASKS:
        for sim in (True, False):
            args = graph.GraphArgs(task=task, sim=sim, robot_ip="" if sim else "172.16.0.2")
            for spec in graph.build_graph(args):
                unknown = set(spec.parameters) - PROCESS_PARAMETERS[spec.executable]
                assert not unknown, (task, spec.role, unknown)
                json.dumps(spec.parameters)


def test_runner_options_reach_the_renamed_node_parameters():
    """--hand-host / --hand-port / --camera-serials set the nodes' host / port / serial (the driver config field
    names); options not given leave the parameter to the task config and the node's default."""
    r = subprocess.run([*RUN, "wipe_board", "--real", "--robot-ip", "10.0.0.2", "--hand-host", "10.0.0.9",
                        "--hand-port", "502", "--camera-serials", "111,222", "--print-commands"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    params = [json.loads(line.split(": ", 1)[1]) for line in r.stdout.splitlines() if line.startswith("# ")]
    roles = [line.split(":")[0][2:] for line in r.stdout.splitlines() if line.startswith("# ")]
    by_role = dict(zip(roles, params))
    assert (by_role["hand"]["host"], by_role["hand"]["port"]) == ("10.0.0.9", 502)
    assert "transport" not in by_role["hand"] and "hand_host" not in by_role["hand"]
    assert by_role["arm"]["robot_ip"] == "10.0.0.2"
    assert [p["serial"] for role, p in zip(roles, params) if role == "camera"] == ["111", "222"]
    assert not {"width", "height", "fps"} & set(by_role["camera"])
    bad = subprocess.run([*RUN, "water_plant", "--hand-transport", "usb"], capture_output=True, text=True, timeout=60)
    _one_line_error(bad, "--hand-transport", "usb")
    no_ip = subprocess.run([*RUN, "water_plant", "--real", "--print-commands"], capture_output=True, text=True,
                           timeout=60)
    _one_line_error(no_ip, "robot_ip")


def test_an_old_parameter_name_stops_the_camera_node_with_one_line():
    """width/height/fps were renamed to the driver's color_width/color_height/color_fps."""
    r = _node("jala_ros.camera_node", "-p", "width:=640")
    _one_line_error(r, "'width'", "color_width")


class _FakeMonitor:
    """What fill_report reads: the monitor's Metrics and its completion service (here: the world's JSON)."""

    def __init__(self, completion: dict):
        from jala_bringup.monitor import Metrics

        self.m = Metrics(completion=dict(completion))
        self._completion = completion

    def call_trigger(self, name, timeout=1.0):
        assert name == "/jala/sim/completion"
        return True, json.dumps(self._completion)


@pytest.mark.parametrize("slip_at_start, slip_at_end, warns", [(0.24, 0.30, False), (0.24, 0.72, True)])
def test_the_report_warns_when_the_simulated_world_fell_behind_during_the_rollout(slip_at_start, slip_at_end, warns):
    """Slip during start-up (loading the model) is not the rollout's; slip during it makes the arm lag its chunks."""
    from jala_bringup.report import fill_report, format_report

    done = {"task": "water_plant", "subtasks": ["grasp_bottle"], "done": [True], "ratio": 1.0}
    report = {"task": "water_plant", "mode": "sim", "duration_s": 30.0, "errors": [],
              "realtime_slip_at_start_s": slip_at_start}
    args = graph.GraphArgs(task="water_plant", sim=True)
    fill_report(report, _FakeMonitor(done | {"realtime_slip_s": slip_at_end}), args, 0.0, 30.0, 0.0)
    text = format_report(report)
    assert "completion ratio: 1.00" in text and "realtime_slip_s" not in text  # not part of the task's completion
    assert ("fell" in text and f"{slip_at_end - slip_at_start:.2f} s behind" in text) == warns


def test_the_temporary_work_folder_stays_only_when_the_report_points_into_its_logs():
    """A process that had to be killed (its stacks end its log) or an error keeps the folder; a clean run or the
    user's own Ctrl-C / SIGTERM removes it."""
    from jala_bringup.cli import logs_needed

    assert not logs_needed({"errors": []})
    assert not logs_needed({"errors": ["interrupted by SIGINT: robot held, policy stopped"], "interrupted": "SIGINT"})
    assert logs_needed({"errors": [], "stop_warnings": ["the policy process did not end within 8 s of SIGINT"]})
    assert logs_needed({"errors": ["RuntimeError: the arm node died"]})
    assert logs_needed({"errors": ["interrupted by SIGTERM: robot held", "the camera died"], "interrupted": "SIGTERM"})
