"""The runner's node processes: start each spec as ``python -m jala_ros.<executable> --ros-args ...`` with its
params file, restart, stop in order; every child dies with the runner (PR_SET_PDEATHSIG)."""
from __future__ import annotations

import functools
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import yaml

from jala_runtime.process import die_with_parent

from .graph import NodeSpec, command_line, params_file_content

SRC_DIR = Path(__file__).resolve().parents[2]  # ros2_ws/src when run from the sources
REPO_DIR = SRC_DIR.parents[1]


def python_path(env: dict[str, str]) -> str:
    """PYTHONPATH for the node processes: the package sources (when not pip-installed) and the repo root."""
    parts = [str(SRC_DIR / "jala_ros"), str(SRC_DIR / "jala_bringup"), str(REPO_DIR)]
    parts = [p for p in parts if Path(p).exists()]
    if env.get("PYTHONPATH"):
        parts.append(env["PYTHONPATH"])
    return os.pathsep.join(parts)


@dataclass
class Process:
    spec: NodeSpec
    cmd: list[str]
    popen: subprocess.Popen
    log: Path


class GraphProcesses:
    """Starts and stops the node processes of a graph."""

    def __init__(self, specs: list[NodeSpec], env: dict[str, str], workdir: Path, python: str = sys.executable):
        self.specs = specs
        self.env = dict(env)
        self.env["PYTHONPATH"] = python_path(env)
        self.env.setdefault("OMP_NUM_THREADS", "1")
        self.env["PYTHONUNBUFFERED"] = "1"
        self.workdir = Path(workdir)
        self.python = python
        self.procs: list[Process] = []

    def commands(self) -> list[tuple[NodeSpec, list[str], Path]]:
        out = []
        for spec in self.specs:
            pfile = self.workdir / f"{spec.role}_{spec.name or spec.executable}.params.yaml"
            out.append((spec, command_line(spec, str(pfile), self.python), pfile))
        return out

    def start(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        for spec, cmd, pfile in self.commands():
            pfile.write_text(yaml.safe_dump(params_file_content(spec), sort_keys=False))
            self.procs.append(self._launch(spec, cmd))

    def _launch(self, spec: NodeSpec, cmd: list[str]) -> Process:
        log = self.workdir / f"{spec.role}_{spec.name or spec.executable}.log"
        with open(log, "ab") as fh:
            # own session (a terminal's Ctrl-C reaches the runner only, which stops the nodes in order), but
            # never outliving the runner
            popen = subprocess.Popen(cmd, env=self.env, stdout=fh, stderr=subprocess.STDOUT, start_new_session=True,
                                     preexec_fn=functools.partial(die_with_parent, os.getpid()))
        return Process(spec, cmd, popen, log)

    def restart(self, role: str) -> Process:
        """Start the process of ``role`` again (after it died or was killed); returns the new one."""
        i, old = next((i, p) for i, p in enumerate(self.procs) if p.spec.role == role)
        if old.popen.poll() is None:
            old.popen.kill()
            old.popen.wait()
        self.procs[i] = self._launch(old.spec, old.cmd)
        return self.procs[i]

    def process(self, role: str) -> Process:
        return next(p for p in self.procs if p.spec.role == role)

    def dead(self) -> list[Process]:
        return [p for p in self.procs if p.popen.poll() is not None]

    def tail(self, proc: Process, n: int = 25) -> str:
        try:
            return "\n".join(proc.log.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""

    def stop(self, timeout: float = 8.0) -> list[str]:
        """SIGINT to every node process, then wait ``timeout`` s for all of them. One still running then gets
        SIGUSR1 first (its threads' stacks go to its log: ``faulthandler``, registered by ``init_ros``), then
        SIGTERM and, 2 s later, SIGKILL. Returns one line per process that had to be stopped that way ([] when
        every process ended on SIGINT)."""
        for p in self.procs:
            if p.popen.poll() is None:
                p.popen.send_signal(signal.SIGINT)
        end = time.monotonic() + timeout
        stuck: list[str] = []
        for p in self.procs:
            try:
                p.popen.wait(timeout=max(0.1, end - time.monotonic()))
            except subprocess.TimeoutExpired:
                p.popen.send_signal(signal.SIGUSR1)
                time.sleep(0.2)  # the stack dump reaches the log
                p.popen.terminate()
                how = "terminated"
                try:
                    p.popen.wait(timeout=2.0)
                except subprocess.TimeoutExpired:
                    p.popen.kill()
                    p.popen.wait()
                    how = "killed"
                stuck.append(f"the {p.spec.role} process did not end within {timeout:.0f} s of SIGINT and was {how} "
                             f"(its threads' stacks at that moment are at the end of {p.log})")
        return stuck
