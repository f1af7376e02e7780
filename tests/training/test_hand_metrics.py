"""Hand-motion metrics (training/metrics.py): MPJPE, PA-MPJPE, MWTE, MDE against hand-computed cases."""
import json

import numpy as np
import pytest

from training.data.hand import axis_angle_to_matrix
from training.evaluate_motion import main as evaluate_main
from training.metrics import (direction_errors, evaluate_files, evaluate_motion, format_table, mde, motion_metrics,
                              mpjpe, mwte, pa_mpjpe, similarity_align)


@pytest.fixture
def joints():
    return np.random.default_rng(0).normal(0, 0.05, (3, 10, 21, 3)) + np.array([0.0, 0.0, 0.5])


def test_mpjpe_of_a_known_offset_is_its_length_in_mm(joints):
    pred = joints + np.array([0.003, 0.004, 0.0])  # 5 mm
    assert mpjpe(pred, joints) == pytest.approx(5.0)
    assert mpjpe(joints, joints) == 0.0
    # one joint of one frame off by 21 mm: mean over 3*10*21 joints
    pred = joints.copy()
    pred[1, 2, 7, 2] += 0.021
    assert mpjpe(pred, joints) == pytest.approx(21.0 / (3 * 10 * 21))


def test_mpjpe_ignores_invalid_frames(joints):
    pred = joints + np.array([0.0, 0.0, 0.002])
    pred[0, 3] += 10.0  # a wildly wrong frame that is marked invalid
    valid = np.ones((3, 10), dtype=bool)
    valid[0, 3] = False
    assert mpjpe(pred, joints, valid) == pytest.approx(2.0)
    assert np.isnan(mpjpe(pred, joints, np.zeros((3, 10), dtype=bool)))
    with pytest.raises(ValueError, match="differs"):
        mpjpe(pred[:, :5], joints)


def test_pa_mpjpe_is_zero_for_a_scaled_rotated_shifted_copy(joints):
    r = axis_angle_to_matrix(np.array([0.3, -1.1, 0.7]))
    pred = 1.7 * joints @ r.T + np.array([0.2, -0.4, 1.0])
    assert mpjpe(pred, joints) > 100.0
    assert pa_mpjpe(pred, joints) == pytest.approx(0.0, abs=1e-6)
    np.testing.assert_allclose(similarity_align(pred, joints), joints, atol=1e-9)


def test_pa_mpjpe_does_not_align_a_mirror_image(joints):
    # a reflection is not a rotation: the mirrored hand must keep a large error
    mirrored = joints * np.array([-1.0, 1.0, 1.0])
    assert pa_mpjpe(mirrored, joints) > 5.0
    aligned = similarity_align(mirrored, joints)
    # the fitted transform is a proper rotation: distances between joints scale uniformly (no shear / flip)
    d_al = np.linalg.norm(aligned[0, 0, 1] - aligned[0, 0, 5])
    d_mi = np.linalg.norm(mirrored[0, 0, 1] - mirrored[0, 0, 5])
    s = np.linalg.norm(aligned[0, 0, 2] - aligned[0, 0, 9]) / np.linalg.norm(mirrored[0, 0, 2] - mirrored[0, 0, 9])
    assert d_al == pytest.approx(s * d_mi)


def test_pa_mpjpe_removes_only_the_similarity_part():
    # unit square corners vs the same square with one corner pushed out: Procrustes cannot remove that
    gt = np.array([[0, 0, 0], [1, 0, 0], [1, 1, 0], [0, 1, 0]], dtype=float)
    pred = gt.copy()
    pred[2] = [1.2, 1.2, 0]
    # Procrustes is a least-squares fit: the aligned squared error is below the raw one, but not zero
    sse = lambda a: float(((a - gt) ** 2).sum())  # noqa: E731
    assert 0 < sse(similarity_align(pred, gt)) < sse(pred)
    assert pa_mpjpe(pred, gt, scale=1.0) > 0.01
    # an in-plane rotation of the distorted shape gives the same PA error
    r = axis_angle_to_matrix(np.array([0, 0, 0.8]))
    assert pa_mpjpe(pred @ r.T * 3.0, gt, scale=1.0) == pytest.approx(pa_mpjpe(pred, gt, scale=1.0))


def test_mwte_is_the_mean_wrist_distance():
    gt = np.zeros((1, 2, 3))
    pred = np.array([[[0.01, 0, 0], [0, 0.03, 0]]])  # 10 mm and 30 mm
    assert mwte(pred, gt) == pytest.approx(20.0)


def test_mde_of_known_directions():
    t = np.linspace(0, 1, 5)[:, None]
    gt = np.stack([t * [0.1, 0, 0]] * 4)  # every GT moves 10 cm along +x
    pred = np.stack([t * [0, 0.1, 0],  # +y: 90 deg
                     t * [-0.1, 0, 0],  # -x: 180 deg
                     t * [0.05, 0.05, 0] + [0.3, 0.2, 0.1],  # +x+y from another start: 45 deg
                     t * [0.2, 0, 0]])  # +x, longer: 0 deg
    np.testing.assert_allclose(direction_errors(pred, gt), [90, 180, 45, 0], atol=1e-9)
    assert mde(pred, gt) == pytest.approx((90 + 180 + 45 + 0) / 4)
    assert mde(pred, gt, degrees=False) == pytest.approx(np.pi * 315 / 720)


def test_mde_skips_still_ground_truth_and_scores_still_predictions_90_deg():
    t = np.linspace(0, 1, 5)[:, None]
    gt = np.stack([t * [0.1, 0, 0], np.zeros((5, 3))])  # the second GT does not move
    pred = np.stack([np.zeros((5, 3)), t * [0.1, 0, 0]])  # the first prediction does not move
    e = direction_errors(pred, gt)
    assert e[0] == pytest.approx(90.0) and np.isnan(e[1])
    assert mde(pred, gt) == pytest.approx(90.0)
    # the displacement runs from the first to the last *valid* frame
    valid = np.ones((2, 5), dtype=bool)
    pred2 = np.stack([t * [0.1, 0, 0]] * 2)
    pred2[0, -1] = [-5, 0, 0]
    valid[0, -1] = False
    assert direction_errors(pred2, gt, valid)[0] == pytest.approx(0.0)


def _joints_with_wrist_path(start, step, t=6):
    rng = np.random.default_rng(1)
    rel = rng.normal(0, 0.03, (21, 3))
    rel[0] = 0
    wrist = np.asarray(start) + np.arange(t)[:, None] * np.asarray(step)
    return wrist[:, None, :] + rel[None]


def test_evaluate_motion_reports_each_split_and_prints_a_table():
    gt = np.stack([_joints_with_wrist_path([0, 0, 0.5], [0.01, 0, 0]) for _ in range(4)])
    pred = gt.copy()
    pred[:2] += [0, 0.002, 0]  # lab: 2 mm off
    pred[2:] += [0, 0, 0.008]  # wild: 8 mm off
    res = evaluate_motion(pred, gt, ["lab", "lab", "wild", "wild"])
    assert res["lab"]["MPJPE"] == pytest.approx(2.0) and res["wild"]["MPJPE"] == pytest.approx(8.0)
    assert res["lab"]["MWTE"] == pytest.approx(2.0) and res["wild"]["MWTE"] == pytest.approx(8.0)
    assert res["all"]["MPJPE"] == pytest.approx(5.0)
    assert res["lab"]["PA-MPJPE"] == pytest.approx(0.0, abs=1e-6)
    assert res["wild"]["MDE"] == pytest.approx(0.0, abs=1e-6) and res["wild"]["n"] == 2
    from rich.console import Console

    console = Console(record=True, width=120)
    console.print(format_table(res))
    text = console.export_text()
    assert "lab" in text and "wild" in text and "8.00" in text and "MDE (deg)" in text
    with pytest.raises(ValueError, match="one domain per sequence"):
        evaluate_motion(pred, gt, ["lab"])


def test_evaluate_motion_cli_matches_predictions_by_id(tmp_path, capsys):
    gt = np.stack([_joints_with_wrist_path([0, 0, 0.5], [0.01, 0, 0]) for _ in range(3)])
    pred = gt + np.array([0.0, 0.003, 0.004])  # 5 mm
    order = [2, 0, 1]
    np.savez(tmp_path / "gt.npz", ids=np.array(["a", "b", "c"]), domain=np.array(["lab", "wild", "lab"]), joints=gt)
    np.savez(tmp_path / "pred.npz", ids=np.array(["a", "b", "c"])[order],
             domain=np.array(["lab", "wild", "lab"])[order], joints=pred[order])
    out = tmp_path / "res.json"
    assert evaluate_main(["--pred", str(tmp_path / "pred.npz"), "--gt", str(tmp_path / "gt.npz"),
                          "--json", str(out)]) == 0
    res = json.loads(out.read_text())
    assert res["lab"]["MPJPE"] == pytest.approx(5.0) and res["wild"]["n"] == 1
    assert "PA-MPJPE" in capsys.readouterr().out
    # a missing prediction is an error, not a silently smaller evaluation
    np.savez(tmp_path / "pred2.npz", ids=np.array(["a", "b"]), domain=np.array(["lab", "wild"]), joints=pred[:2])
    with pytest.raises(ValueError, match="no prediction"):
        evaluate_files(tmp_path / "pred2.npz", tmp_path / "gt.npz")
    assert evaluate_main(["--pred", str(tmp_path / "pred2.npz"), "--gt", str(tmp_path / "gt.npz")]) == 2


def test_motion_metrics_counts(joints):
    m = motion_metrics(joints + 0.001, joints)
    assert m["n"] == 3 and m["frames"] == 30
    assert m["MPJPE"] == pytest.approx(np.sqrt(3.0))
