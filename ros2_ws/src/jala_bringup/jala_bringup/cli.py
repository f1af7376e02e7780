"""Project runner: bring up a task's node graph without ``ros2 launch``, run one policy rollout, report.

    python launch/run_task.py water_plant --sim --duration 20
    python -m jala_bringup.run water_plant --sim --duration 20 --json

Builds the node specs with ``jala_bringup.graph`` (the launch files use the same), writes one params file per
process, starts each as ``python -m jala_ros.<executable> --ros-args ...`` with the loopback DDS environment
(``jala_bringup.ros_env``), waits until frames, joint states and the policy are up, calls
``/jala/policy/start``, runs for ``--duration`` seconds, stops the policy and prints: camera rate, joint-state
rates, camera-frame-to-chunk latency p50/p99 (frame stamp -> chunk received here), chunks executed by arm and
hand, every hold with its reason and time, and (simulation) the final Completion Ratio. Without
``--checkpoint`` a tiny random demo checkpoint (``jala_policy.demo_checkpoint``) is written to the run directory.

Faults: SIGINT (Ctrl-C) or SIGTERM stops the rollout at once: the runner asks for a hold (supervisor, and the
arm and hand directly on ``/jala/hold``), stops the policy, prints the report so far and exits (130 / 143).
A node process that dies ends the rollout the same way, the hold first, its reason in the report. The node
processes die with the runner, even when it is SIGKILLed (PR_SET_PDEATHSIG, and each node also watches its
parent; one whose shutdown then hangs prints its stacks to its log and kills itself 6 s later). At start, Fast
DDS shared-memory files left by killed processes are removed (``shm_cleanup``); the run's temporary work folder
is removed at exit unless the report points into its logs (``logs_needed``; ``--workdir DIR`` keeps params files
and logs in DIR).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import random
import shutil
import signal
import sys
import tempfile
from pathlib import Path

from .arguments import add_cli_options, graph_arguments
from .graph import TASKS, GraphArgs, build_graph
from .processes import GraphProcesses
from .report import format_report
from .ros_env import loopback_env
from .rollout import StopSignals, run_rollout


def domain_id_arg(text: str) -> int:
    """argparse type for --domain-id: an int in ROS 2's safe range on Linux (0..101)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if not 0 <= value <= 101:
        raise argparse.ArgumentTypeError(f"{value} is outside 0..101 (ROS 2's safe domain ids on Linux)")
    return value


class OneLineErrorParser(argparse.ArgumentParser):
    """argparse whose errors are one line (not the whole usage block): ``run_task: <error> (--help: usage)``."""

    def error(self, message: str):
        self.exit(2, f"run_task: {message} (--help: usage)\n")


RUNNER_NOTES = {"checkpoint": "runner: not given = a tiny random demo checkpoint in the work folder"}


def build_parser() -> OneLineErrorParser:
    """The runner's options: task, --sim/--real, the node-parameter options generated from the node config
    dataclasses (``jala_bringup.arguments``: --checkpoint, --robot-ip, --hand-host, ...), and the runner's own."""
    ap = OneLineErrorParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("task", choices=TASKS)
    mode = ap.add_mutually_exclusive_group()
    sim_default = next(f.default for f in dataclasses.fields(GraphArgs) if f.name == "sim")
    mode.add_argument("--sim", dest="sim", action="store_true", default=sim_default,
                      help="simulated world" + (" (default)" if sim_default else ""))
    mode.add_argument("--real", dest="sim", action="store_false",
                      help="the real robot" + ("" if sim_default else " (default)"))
    add_cli_options(ap, RUNNER_NOTES)
    ap.add_argument("--duration", type=float, default=20.0, help="policy rollout length [s]")
    ap.add_argument("--domain-id", type=domain_id_arg, default=None, help="ROS_DOMAIN_ID 0..101 (default: random "
                                                                          "10..99)")
    ap.add_argument("--workdir", default="", help="keep params files, logs and the demo checkpoint in this folder "
                                                  "(default: a temporary folder, removed at exit unless an error or a "
                                                  "killed process points into its logs)")
    ap.add_argument("--startup-timeout", type=float, default=180.0)
    ap.add_argument("--print-commands", action="store_true", help="print the node command lines and exit")
    ap.add_argument("--json", action="store_true", help="print the report as JSON")
    ap.add_argument("--estop-at-end", action="store_true",
                    help="end the rollout with the supervisor's estop and report detection -> hold latency")
    return ap


def graph_args_from_options(a: argparse.Namespace) -> GraphArgs:
    """GraphArgs from parsed runner options (the generated ones map 1:1 onto GraphArgs' fields)."""
    return GraphArgs(task=a.task, sim=a.sim, **{g.name: getattr(a, g.name) for g in graph_arguments() if g.cli})


def logs_needed(report: dict) -> bool:
    """Whether the run's temporary folder (params files, node logs, demo checkpoint) must outlive it: the report
    points into its logs (an error, or a process that had to be stopped: its thread stacks end its log). A run
    stopped by Ctrl-C / SIGTERM alone, the user's own stop, leaves nothing behind."""
    errors = len(report.get("errors", [])) - (1 if report.get("interrupted") else 0)
    return errors > 0 or bool(report.get("stop_warnings"))


def main(argv=None) -> int:
    a = build_parser().parse_args(argv)
    try:
        gargs = graph_args_from_options(a)
        # a broken config or bad arguments are an error before anything starts
        preview = build_graph(dataclasses.replace(gargs, checkpoint=gargs.checkpoint or "<checkpoint>"))
        if a.print_commands:
            for spec, cmd, _ in GraphProcesses(preview, loopback_env(), Path("<workdir>")).commands():
                print(f"# {spec.role}: {json.dumps(spec.parameters)}\n{' '.join(cmd)}")
            return 0
        if a.checkpoint and not (Path(a.checkpoint).expanduser() / "config.json").is_file():
            raise FileNotFoundError(f"--checkpoint {a.checkpoint}: no JALA policy checkpoint there (config.json "
                                    "missing); python -m jala_policy.demo_checkpoint --out DIR makes a tiny one")
    except (ValueError, FileNotFoundError) as exc:  # ConfigError, UnknownParameterError, bad arguments
        print(f"run_task: {exc}", file=sys.stderr)
        return 2
    signals = StopSignals().install()
    workdir = Path(a.workdir) if a.workdir else Path(tempfile.mkdtemp(prefix=f"jala_{a.task}_"))
    report: dict = {}
    try:
        domain = a.domain_id if a.domain_id is not None else random.randint(10, 99)
        report = run_rollout(gargs, a.duration, domain, workdir, a.startup_timeout, estop_at_end=a.estop_at_end,
                             signals=signals)
        print(json.dumps(report, indent=1) if a.json else format_report(report), flush=True)
    finally:
        keep = bool(a.workdir) or logs_needed(report)
        if not keep:
            shutil.rmtree(workdir, ignore_errors=True)
        signals.restore()
    if keep:
        print(f"[run] node logs: {workdir}" + ("" if a.workdir else " (kept for the warnings above; remove it when "
                                                                     "done)"), file=sys.stderr)
    if report.get("interrupted"):
        return 128 + int(getattr(signal, report["interrupted"]))
    if report["errors"]:
        return 1
    return 0
