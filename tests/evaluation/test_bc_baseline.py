"""The behaviour-cloning baseline (training/bc_baseline) and how the simulated evaluation loads and sizes
policies (evaluation.policies.load_policy, evaluation.simulated.render_size): the L1 loss falls when it overfits
a few recorded samples, the shift augmentation shifts, the arm output is the current joints plus the predicted
offsets, a saved baseline runs a rollout, and a JalaPolicy checkpoint gets frames of its training size."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

pytest.importorskip("hardware.sim.world")  # sets MUJOCO_GL before mujoco is imported

from hardware.sim import SimWorld, SimWorldConfig  # noqa: E402
from jala_policy.config import ConfigError  # noqa: E402
from training.bc_baseline.model import (BCNet, decode_actions, encode_targets, load_bc, resize_frames,  # noqa: E402
                                        shift_augment)
from training.bc_baseline.train import TrainingData, fit, load_training_data, make_config, train  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_torch_thread")

W, H = 128, 96  # recorded frame size of the tiny dataset
SMALL = {"keypoints": 8, "channels": (8, 16, 16), "hidden": 64}  # a smaller network: fast enough for a test


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    """A scripted water_plant demonstration (LeRobot v3.0) at 128x96."""
    from training.recording.record import collect_simulated

    root = tmp_path_factory.mktemp("bc") / "water_plant"
    collect_simulated("water_plant", 1, root, width=W, height=H, progress=False)
    return root


@pytest.fixture(scope="module")
def data(dataset):
    return load_training_data([str(dataset)], log=lambda m: None)


@pytest.fixture(scope="module")
def trained(dataset, tmp_path_factory):
    out = tmp_path_factory.mktemp("bc_run") / "bc"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # (module scope: set up before the one_torch_thread fixture)
    try:
        train([str(dataset)], str(out), steps=2, batch_size=8, seed=0, log=lambda m: None, model=SMALL)
    finally:
        torch.set_num_threads(threads)
    return out


def _world(**kw):
    return SimWorld(SimWorldConfig(task="water_plant", render_width=kw.pop("w", W), render_height=kw.pop("h", H),
                                   **kw))


def test_training_data_is_preloaded_at_96x72(data):
    n = len(data)
    assert n > 20 and data.images.shape == (n, 1, 72, 96, 3) and data.images.dtype == torch.uint8
    assert data.state.shape == (n, 13) and data.actions.shape == (n, 16, 13) and data.mask.shape == (n, 16)
    assert not bool(data.mask[-1].any()) and bool(data.mask[0].all())  # the last frame's chunk is all padding
    assert data.images.float().std() > 5  # real frames, not blank


def test_min_clearance_leaves_out_the_same_demos_as_post_training(dataset, data, capsys):
    """--min-clearance: the baseline trains on the episodes post-training's data.min_clearance keeps; a demo
    closer to the FR3 gate's joint limits is left out, and none left is a one-line error."""
    from training.bc_baseline.train import main
    from training.posttrain.data import load_datasets
    from training.recording.action_margin import episode_clearances

    clearance = float(episode_clearances(load_datasets([str(dataset)])[0])[0])
    kept = load_training_data([str(dataset)], log=lambda m: None, min_clearance=clearance - 0.01)
    assert len(kept) == len(data)
    lines = []
    with pytest.raises(ConfigError, match="no episodes that keep"):
        load_training_data([str(dataset)], log=lines.append, min_clearance=clearance + 0.01)
    assert "left out 1 of 1 episode(s)" in lines[0]
    assert main(["--data", str(dataset), "--output", str(dataset.parent / "none"), "--steps", "1",
                 "--min-clearance", f"{clearance + 0.01}"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: the datasets hold no episodes that keep") and "Traceback" not in err


def test_loss_falls_when_overfitting_a_few_samples(data):
    idx = torch.arange(0, len(data), max(1, len(data) // 8))[:8]
    few = TrainingData(data.images[idx], data.state[idx], data.actions[idx], data.mask[idx], data.dataset)
    few.mask[:] = True
    cfg = make_config(data, **SMALL)
    torch.manual_seed(0)
    net = BCNet(cfg)
    losses = fit(net, cfg, few, steps=60, batch_size=8, lr=3e-3, seed=0, augment=False, log_every=0)
    assert np.mean(losses[-5:]) < 0.5 * np.mean(losses[:5]), (losses[:5], losses[-5:])


def test_training_is_deterministic_for_a_seed(data):
    cfg = make_config(data, **SMALL)
    runs = []
    for _ in range(2):
        torch.manual_seed(0)
        net = BCNet(cfg)
        runs.append(fit(net, cfg, data, steps=3, batch_size=4, seed=7, log_every=0))
    assert runs[0] == runs[1]


def test_shift_augmentation_keeps_the_shape_and_shifts():
    img = torch.zeros(32, 3, 72, 96)
    img[:, :, 36, 48] = 1.0  # one bright pixel
    out = shift_augment(img, pad=4, generator=torch.Generator().manual_seed(0))
    assert out.shape == img.shape and out.dtype == img.dtype
    shifts = set()
    for b in range(32):
        ys, xs = torch.nonzero(out[b, 0], as_tuple=True)
        assert len(ys) == 1  # moved, not blurred or lost (4 px from a 36 px margin)
        dy, dx = int(ys[0]) - 36, int(xs[0]) - 48
        assert abs(dy) <= 4 and abs(dx) <= 4
        assert torch.equal(out[b, 1], out[b, 0])  # one shift for all channels of a sample
        shifts.add((dy, dx))
    assert len(shifts) > 5
    again = shift_augment(img, pad=4, generator=torch.Generator().manual_seed(0))
    assert torch.equal(again, out)


def test_resize_frames_to_the_network_input():
    frames = np.random.default_rng(0).integers(0, 256, (3, H, W, 3), dtype=np.uint8)
    out = resize_frames(frames)
    assert out.shape == (3, 72, 96, 3) and out.dtype == np.uint8
    flat = np.full((H, W, 3), 77, np.uint8)
    assert np.all(resize_frames(flat) == 77)


def test_arm_output_is_current_joints_plus_offsets(data, trained):
    from evaluation.policies import BCPolicy

    net, cfg = load_bc(trained)
    # targets round-trip: encode then decode gives the recorded chunk back (hand inside 0..1000)
    s, a = data.state[:5].double(), data.actions[:5].double()
    assert torch.allclose(decode_actions(cfg, s, encode_targets(cfg, s, a)), a, atol=1e-4)
    w = _world()
    try:
        policy = BCPolicy(trained, w)
        with torch.no_grad():
            for p in policy.net.parameters():
                p.zero_()
        proprio = np.array([0.1, -0.4, 0.05, -2.1, 0.02, 1.7, 0.9, 1000, 900, 800, 700, 600, 500], float)
        image = np.zeros((H, W, 3), np.uint8)
        chunk = policy.predict([image], "water the plant", proprio, timestamp=2.0)
        assert chunk.positions.shape == (16, 13) and chunk.stamp == 2.0
        np.testing.assert_allclose(chunk.positions[:, :7], np.tile(proprio[:7], (16, 1)), atol=1e-9)
        assert np.all((chunk.positions[:, 7:] >= 0) & (chunk.positions[:, 7:] <= 1000))
        # a non-zero offset output moves the arm by output * scale from wherever it is
        with torch.no_grad():
            policy.net.head[-1].bias[:13] = torch.tensor([1.0] * 7 + [0.0] * 6)
        moved = policy.predict_actions([image], proprio)
        np.testing.assert_allclose(moved[0, :7], proprio[:7] + np.array(cfg.arm_offset_scale), atol=1e-6)
    finally:
        w.close()


def test_saved_baseline_loads_and_runs_a_rollout(trained):
    from evaluation.policies import BCPolicy, load_policy, policy_input_hw
    from evaluation.simulated import evaluate, render_size, run_episode

    assert (trained / "bc_policy.pt").is_file()
    doc = json.loads((trained / "bc_config.json").read_text())
    assert doc["record_hw"] == [H, W] and doc["camera_keys"] and doc["instruction"]
    assert policy_input_hw(str(trained)) == (H, W) and render_size(str(trained)) == (W, H)
    w = _world(w=64, h=48)  # any frame size: the baseline resizes to its input
    try:
        policy = load_policy(str(trained), w)
        assert isinstance(policy, BCPolicy)
        res = run_episode(w, policy, seed=5, max_seconds=0.8)
        assert res.chunks >= 1 and 0.0 <= res.completion_ratio <= 1.0
    finally:
        w.close()
    summary = evaluate("water_plant", "seen", str(trained), episodes=1, seed=3, progress=False, max_seconds=0.5)
    assert 0.0 <= summary.mean_completion_ratio <= 1.0 and summary.episodes[0].chunks >= 1


def test_load_policy_refuses_what_it_cannot_run(tmp_path):
    from evaluation.policies import PolicySpecError, policy_kind

    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(PolicySpecError, match="bc_policy.pt.*config.json"):
        policy_kind(str(tmp_path))
    with pytest.raises(PolicySpecError, match="existing checkpoint directory"):
        policy_kind(str(tmp_path / "missing"))
    assert policy_kind("expert") == "expert"


def test_both_clis_refuse_a_checkpoint_with_an_invalid_config_in_one_line(tmp_path, capsys):
    """A JalaPolicy checkpoint whose config.json is invalid (here inference.noise_scale 0) is a one-line usage
    error before any rollout, from python -m evaluation and python -m evaluation.table alike, not a traceback."""
    from evaluation.simulated import main as evaluate_main
    from evaluation.table import main as table_main

    ckpt = tmp_path / "ckpt"
    ckpt.mkdir()
    (ckpt / "policy_heads.safetensors").write_bytes(b"")
    (ckpt / "config.json").write_text(json.dumps({"inference": {"noise_scale": 0.0}}))
    for main, argv in ((evaluate_main, ["--policy", str(ckpt)]), (table_main, ["--policy", "expert",
                                                                                "--policy", f"bad={ckpt}"])):
        with pytest.raises(SystemExit) as exc:
            main(["--task", "water_plant", "--episodes", "1", *argv])
        err = capsys.readouterr().err
        assert exc.value.code == 2 and "Traceback" not in err
        assert "config.json is not a valid JalaPolicyConfig" in err and "noise_scale" in err


def test_evaluate_renders_at_the_checkpoints_input_size(tmp_path):
    """No --width/--height: the world renders at the checkpoint's input_image_hw; an explicit size of another
    aspect ratio stays the policy's clear error."""
    from evaluation.simulated import evaluate, render_size
    from jala_policy.policy import PolicyInputError
    from tests.helpers import tiny_policy

    tiny_policy((48, 64)).save_pretrained(tmp_path / "ckpt")
    spec = str(tmp_path / "ckpt")
    assert render_size(spec) == (64, 48)
    assert render_size(spec, 100, 80) == (100, 80) and render_size("expert") == (640, 480)
    summary = evaluate("water_plant", "seen", spec, episodes=1, seed=0, progress=False, device="cpu",
                       max_seconds=0.2)
    assert summary.episodes[0].chunks >= 1
    with pytest.raises(PolicyInputError, match="48x64 frames, another aspect ratio"):
        evaluate("water_plant", "seen", spec, episodes=1, seed=0, width=64, height=64, progress=False,
                 device="cpu", max_seconds=0.2)


def test_table_compares_policies_over_tasks_variants_and_seeds(trained, tmp_path):
    from evaluation.policies import PolicySpecError
    from evaluation.table import main, markdown, parse_policy, run_table

    assert parse_policy("expert") == ("expert", "expert") and parse_policy(f"bc={trained}") == ("bc", str(trained))
    with pytest.raises(PolicySpecError):
        parse_policy(f"x={tmp_path / 'missing'}")
    rows = run_table(["water_plant"], ["seen", "unseen"], [("expert", "expert"), ("bc", str(trained))], 2, 10,
                     max_seconds=0.3, progress=False, width=64, height=48)
    assert [(r["policy"], r["variant"]) for r in rows] == [("expert", "seen"), ("expert", "unseen"),
                                                           ("bc", "seen"), ("bc", "unseen")]
    assert all(r["episodes"] == 2 and r["seeds"] == [10, 11] and 0 <= r["mean_completion_ratio"] <= 1
               and r["subtask_success"] for r in rows)
    # each episode ran out its 0.3 s and says when (simulated time) it ended
    assert all(r["stopped"] == ["timeout"] * 2 and all(0.29 <= t <= 0.45 for t in r["ended_at_s"]) for r in rows)
    md = markdown(rows)
    assert "| policy | water_plant / seen | water_plant / unseen |" in md
    assert md.count("| bc | ") == 3  # the CR row, then one subtask row per variant
    assert "Subtask success rate, water_plant" in md
    assert "| all | safety stop | median end (s) | execute steps |" in md
    bc_seen = next(line for line in md.splitlines() if line.startswith("| bc | seen | "))
    assert float(bc_seen.split("|")[-3]) == round(float(np.median(rows[2]["ended_at_s"])), 1)
    out = tmp_path / "t.json"
    assert main(["--policy", "expert", "--episodes", "1", "--max-seconds", "0.2", "--width", "64", "--height", "48",
                 "--no-progress", "--json", str(out)]) == 0
    assert json.loads(out.read_text())["rows"][0]["policy"] == "expert"
