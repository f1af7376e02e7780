"""The suite's rule (tests/conftest.py): with JALA_REQUIRE_SAFETY_TESTS=1, as scripts/test.sh and so .ci/run set
it, a run in which a safety test is skipped fails; other skips do not."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent

CASES = {
    "module_skip": "import pytest\npytestmark = pytest.mark.safety\npytest.importorskip('no_such_module_xyz')\n\n"
                   "def test_gate(request):\n    assert request.node.get_closest_marker('safety') is not None\n",
    "test_skip": "import pytest\n\n@pytest.mark.safety\ndef test_hold():\n    pytest.skip('device missing')\n",
    "plain_skip": "import pytest\n\ndef test_other():\n    pytest.skip('not a safety test')\n\n"
                  "@pytest.mark.safety\ndef test_hold(request):\n"
                  "    assert request.node.get_closest_marker('safety') is not None\n",
}


def _run(tmp_path: Path, case: str, require: bool) -> subprocess.CompletedProcess:
    d = tmp_path / case
    d.mkdir(parents=True)
    shutil.copy(HERE / "conftest.py", d / "conftest.py")
    (d / f"test_{case}.py").write_text(CASES[case])
    (d / "pytest.ini").write_text("[pytest]\nmarkers =\n    safety: a safety test\n")
    env = dict(os.environ)
    env.pop("JALA_REQUIRE_SAFETY_TESTS", None)
    if require:
        env["JALA_REQUIRE_SAFETY_TESTS"] = "1"
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(d)], cwd=d, env=env,
                          capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("case", ["module_skip", "test_skip"])
def test_a_skipped_safety_test_fails_the_run(tmp_path, case):
    r = _run(tmp_path, case, require=True)
    assert r.returncode != 0, r.stdout
    assert "safety tests were skipped" in r.stdout
    # a developer's single-file run is not stopped (5: pytest's "no test ran" when the whole module skipped)
    assert _run(tmp_path / "free", case, require=False).returncode in (0, 5)


def test_other_skips_do_not_fail_the_run(tmp_path):
    r = _run(tmp_path, "plain_skip", require=True)
    assert r.returncode == 0, r.stdout
    assert "safety tests were skipped" not in r.stdout
