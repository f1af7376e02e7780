"""The post-trained checkpoint ``./scripts/demo.sh`` runs (``checkpoints/water_plant-jala-small``): small enough to
ship (<= 10 MB), produced by this project's own record + post-train commands (its ``posttrain.json`` says which
data and recipe), and loadable by the current code, where it gives a sensible chunk for the simulated world's
first frame: finite, within the FR3's joint limits, starting near the arm's posture."""
from __future__ import annotations

import json
import re

import numpy as np

from embodiment import ARM_DOF, FR3_Q_MAX, FR3_Q_MIN
from tests.helpers import ROOT

SHIPPED = ROOT / "checkpoints" / "water_plant-jala-small"


def test_the_demo_runs_the_shipped_checkpoint_and_it_is_at_most_10_mb():
    assert re.search(r"--checkpoint\s+checkpoints/water_plant-jala-small", (ROOT / "scripts" / "demo.sh").read_text())
    size = sum(p.stat().st_size for p in SHIPPED.rglob("*") if p.is_file())
    assert size <= 10 * 2**20, f"{size / 2**20:.1f} MB"
    info = json.loads((SHIPPED / "posttrain.json").read_text())
    # the small preset, post-trained from its random weights or (a second stage) from an earlier stage's export
    assert json.loads((SHIPPED / "config.json").read_text())["backbone"]["preset"] == "small"
    assert info["config"]["model"]["init"] not in ("tiny", "internvl3-2b")
    assert 0 < info["step"] <= info["config"]["run"]["max_steps"]
    assert "seed" in info["config"]["run"]
    readme = (SHIPPED / "README.md").read_text()
    assert "python -m training.recording.record" in readme and "python -m training.posttrain" in readme


def test_the_shipped_checkpoint_loads_and_acts_sensibly_in_the_simulated_world():
    from hardware.sim.world import SimWorld, SimWorldConfig
    from jala_policy.policy import JalaPolicy

    policy = JalaPolicy.from_pretrained(SHIPPED, device="cpu")
    h, w = policy.config.input_image_hw
    world = SimWorld(SimWorldConfig(task="water_plant", seed=1000, render_width=w, render_height=h))
    try:
        world.reset(1000)
        chunk = policy.predict(world.images(), world.instruction, world.proprio(), timestamp=0.0, seed=0)
        q = world.proprio()[:ARM_DOF]
    finally:
        world.close()
    arm = chunk.positions[:, :ARM_DOF]
    assert np.isfinite(chunk.positions).all()
    assert np.all(arm >= FR3_Q_MIN) and np.all(arm <= FR3_Q_MAX)
    assert np.abs(arm[0] - q).max() < 0.1  # the first target (1/15 s ahead) is a small step from where the arm is
