"""Suite-wide rule: a skipped safety test fails the run.

Tests marked ``safety`` (the fault suite, the arm safety gate, holds and reflexes of the drivers) guard what
keeps the robot from moving when it must not. With JALA_REQUIRE_SAFETY_TESTS=1 (set by scripts/test.sh, so by
.ci/run) a run in which any of them was skipped (a missing dependency, an importorskip) exits non-zero and names
them; a developer running a single file without that variable is not stopped.

Also the shared fixture ``one_torch_thread``.
"""
from __future__ import annotations

import os

import pytest

_skipped_safety: list[str] = []


def pytest_runtest_logreport(report):
    if report.skipped and "safety" in report.keywords:
        _skipped_safety.append(report.nodeid)


def pytest_collectreport(report):
    # a module-level importorskip skips the whole module at collection: its tests never get a report of their own
    if report.skipped and report.fspath and _module_is_safety(report.fspath):
        _skipped_safety.append(report.nodeid or report.fspath)


def _module_is_safety(path: str) -> bool:
    try:
        with open(path, encoding="utf-8") as f:
            return "pytestmark = pytest.mark.safety" in f.read()
    except OSError:
        return False


def pytest_sessionfinish(session, exitstatus):
    if _skipped_safety and os.environ.get("JALA_REQUIRE_SAFETY_TESTS") == "1":
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        lines = ["safety tests were skipped (JALA_REQUIRE_SAFETY_TESTS=1 requires every one to run):",
                 *(f"  {n}" for n in _skipped_safety)]
        if reporter is not None:
            reporter.write_line("")
            for line in lines:
                reporter.write_line(line, red=True)
        if session.exitstatus == 0:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED


@pytest.fixture(scope="module")
def one_torch_thread():
    """Tiny models gain nothing from intra-op threads; on a loaded 2-core machine they cost 10x. Modules that
    train or run them use it with ``pytestmark = pytest.mark.usefixtures("one_torch_thread")``."""
    import torch

    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)
