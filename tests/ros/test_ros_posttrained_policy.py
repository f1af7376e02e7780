"""A checkpoint exported by post-training drives the simulated water_plant graph: the runner
(``launch/run_task.py``, the same processes ``ros2 launch`` starts) loads it in the policy node unchanged, and
the arm and hand nodes execute its chunks.

The checkpoint is the tiny preset post-trained for a few steps on a hand-made dataset of 320x240 frames (the
simulated camera renders 256x192 through ROS: the same aspect ratio, which the policy accepts) whose arm actions
spread 0.005 rad around the ready pose. Two steps leave the head's samples close to noise scaled by that spread:
their largest step between waypoints is about 0.03 rad, against the gate's 0.1 (with a 0.02 rad spread it was
above 0.1 in 1 to 2 chunks of 100, and the gate refused such a chunk). A chunk skipped as late on a loaded machine is
allowed (the devices' diagnostics count those apart); one refused is not."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

pytest.importorskip("rclpy")
pytest.importorskip("hardware.sim.world")

from embodiment import HAND_DOF, READY_Q  # noqa: E402
from tests.helpers import ROOT, write_demo_dataset  # noqa: E402


def test_a_posttrained_checkpoint_runs_in_the_policy_node_and_its_chunks_are_executed(tmp_path):
    from hardware.sim.tasks import INSTRUCTIONS
    from training.posttrain.__main__ import main

    instruction = INSTRUCTIONS["water_plant"]
    centre = np.concatenate([READY_Q, np.full(HAND_DOF, 500.0)])
    scale = np.concatenate([np.full(len(READY_Q), 0.005), np.full(HAND_DOF, 20.0)])
    data = write_demo_dataset(tmp_path / "data", 15, [20, 20], hw=(240, 320), task=instruction, smooth=True,
                              centre=centre, scale=scale)
    out = tmp_path / "run"
    assert main(["--config", "tiny", "--data", str(data), "--output", str(out), "--steps", "2", "--no-progress"]) == 0
    from jala_policy.inference_settings import main as settings

    assert settings([str(out / "policy"), "--execute-steps", "12"]) == 0  # the node follows the checkpoint's choice
    r = subprocess.run([sys.executable, "launch/run_task.py", "water_plant", "--sim", "--checkpoint",
                        str(out / "policy"), "--device", "cpu", "--duration", "4", "--json",
                        "--domain-id", "71"], cwd=ROOT,  # a domain no other test uses
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    report = json.loads(r.stdout[r.stdout.index("{"):])  # after the runner's "[run] ..." progress lines
    assert report["chunks_received"] >= 2, report
    assert report["policy_execute_steps"] == 12, report
    arm, hand = report["arm"], report["hand"]  # the device nodes' diagnostics (strings)
    assert int(arm["chunks_executed"]) >= 1 and int(hand["chunks_executed"]) >= 1, report
    # no chunk refused by the gate or the hand: a chunk skipped as late (a loaded machine) is the runtime's rule,
    # not the checkpoint's doing
    for dev in (arm, hand):
        assert int(dev["chunks_refused"]) == int(dev["chunks_skipped_late"]), (dev["last_refusal"], report)
