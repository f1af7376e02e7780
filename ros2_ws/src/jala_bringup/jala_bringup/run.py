"""Project runner entry point: ``python -m jala_bringup.run`` (and the ``run_task`` console script).

    python launch/run_task.py water_plant --sim --duration 20
    python -m jala_bringup.run water_plant --sim --duration 20 --json

The runner's parts, by concern: ``processes`` (node processes: start, restart, stop, PR_SET_PDEATHSIG),
``monitor`` (the monitor node: topics, holds, diagnostics timing, rate statistics), ``rollout`` (one rollout,
stop signals, checkpoint), ``report`` (the report's figures and printed form), ``cli`` (options and ``main``).
The names below are re-exported for existing imports (``from jala_bringup.run import GraphProcesses``).
"""
from __future__ import annotations

import sys

from .cli import OneLineErrorParser, build_parser, domain_id_arg, graph_args_from_options, main  # noqa: F401
from .monitor import Metrics, Monitor, published_rate, rate_stats  # noqa: F401
from .processes import REPO_DIR, SRC_DIR, GraphProcesses, Process, die_with_parent, python_path  # noqa: F401
from .report import fill_report, format_report  # noqa: F401
from .rollout import Interrupted, StopSignals, ensure_checkpoint, run_rollout  # noqa: F401

if __name__ == "__main__":
    sys.exit(main())
