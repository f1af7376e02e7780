"""Hand-motion generation metrics (paper A.5): MPJPE, PA-MPJPE, MWTE, MDE, reported per split (lab, wild).

Conventions (inputs in metres, outputs as below)
- MPJPE [mm]: mean Euclidean distance between predicted and ground-truth 3-D joints, over all joints of all
  valid frames (1000 x metres, as Being-H0).
- PA-MPJPE [mm]: MPJPE after aligning each predicted frame's joints to the ground truth with a similarity
  transform (scale, rotation, translation; Umeyama/Procrustes via SVD with the reflection fix, so a mirror
  image is never "aligned" by a reflection).
- MWTE [mm]: mean Euclidean distance between predicted and ground-truth wrist positions over valid frames.
- MDE [deg]: for each sequence, the angle between the predicted and ground-truth final wrist displacement
  (last valid frame minus first valid frame, each relative to its own initial wrist position), averaged over
  sequences. Sequences whose ground-truth displacement is shorter than ``min_displacement`` (default 1 cm)
  have no direction and are skipped (the count used is reported as ``mde_n``); a predicted displacement shorter
  than that counts as 90 deg (no directional information). A.5 gives no unit; degrees are used here.

Arrays: joints (N, T, J, 3), wrist (N, T, 3), valid (N, T) bool (default all True). The wrist is joint 0.

Like with like: prediction and ground truth must take their joints from the same source, or MPJPE and MWTE
measure the difference between two skeletons. Generated motion has no MANO joints, so training/generate.py
computes both sides with the FK skeleton of training/data/hand.py (``FK_JOINTS``), even when the dataset stores
MANO joints. The source is recorded (``joint_source`` in result files), checked by :func:`evaluate_files` and
printed under the table.

CLI: ``python -m training.evaluate_motion --pred PRED.npz --gt GT.npz`` (file format in
:func:`load_motion_file`), prints a rich table; :func:`evaluate_motion` / :func:`print_table` are the library
form used by training/generate.py.
"""
from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np

MM = 1000.0  # metres -> millimetres
FK_JOINTS = "FK skeleton of the 99-D motion (training.data.hand.HandSkeleton)"
GIVEN_JOINTS = "joints as given"


def _valid(valid, shape) -> np.ndarray:
    return np.ones(shape, dtype=bool) if valid is None else np.broadcast_to(np.asarray(valid, bool), shape)


def _check_pair(pred, gt, min_ndim: int) -> tuple[np.ndarray, np.ndarray]:
    p, g = np.asarray(pred, np.float64), np.asarray(gt, np.float64)
    if p.shape != g.shape:
        raise ValueError(f"prediction shape {p.shape} differs from ground truth {g.shape}")
    if p.ndim < min_ndim or p.shape[-1] != 3:
        raise ValueError(f"expected (..., 3) positions with at least {min_ndim} dims, got {p.shape}")
    return p, g


def mpjpe(pred, gt, valid=None, scale: float = MM) -> float:
    """Mean per-joint position error. pred/gt (..., J, 3); valid (...) over the leading (frame) axes."""
    p, g = _check_pair(pred, gt, 2)
    v = _valid(valid, p.shape[:-2])
    if not v.any():
        return float("nan")
    err = np.linalg.norm(p - g, axis=-1)  # (..., J)
    return float(err[v].mean() * scale)


def similarity_align(pred, gt) -> np.ndarray:
    """Align each pred point set (..., J, 3) to gt with the best scale*R*x + t (R a proper rotation)."""
    p, g = _check_pair(pred, gt, 2)
    mu_p, mu_g = p.mean(-2, keepdims=True), g.mean(-2, keepdims=True)
    x, y = p - mu_p, g - mu_g
    var_x = (x ** 2).sum((-1, -2))
    cov = np.swapaxes(y, -1, -2) @ x  # sum_i y_i x_i^T, (..., 3, 3)
    u, d, vt = np.linalg.svd(cov)
    sign = np.sign(np.linalg.det(u @ vt))
    sign = np.where(sign == 0, 1.0, sign)
    s_diag = np.ones(d.shape)
    s_diag[..., -1] = sign
    r = u @ (s_diag[..., :, None] * vt)  # U S V^T
    scale = (d * s_diag).sum(-1) / np.maximum(var_x, 1e-12)
    return scale[..., None, None] * (x @ np.swapaxes(r, -1, -2)) + mu_g


def pa_mpjpe(pred, gt, valid=None, scale: float = MM) -> float:
    """MPJPE after per-frame similarity (Procrustes) alignment."""
    p, g = _check_pair(pred, gt, 2)
    return mpjpe(similarity_align(p, g), g, valid, scale)


def mwte(pred_wrist, gt_wrist, valid=None, scale: float = MM) -> float:
    """Mean wrist translation error. pred/gt (..., 3) wrist positions; valid (...) frames."""
    p, g = _check_pair(pred_wrist, gt_wrist, 1)
    v = _valid(valid, p.shape[:-1])
    if not v.any():
        return float("nan")
    return float(np.linalg.norm(p - g, axis=-1)[v].mean() * scale)


def direction_errors(pred_wrist, gt_wrist, valid=None, min_displacement: float = 0.01,
                     degrees: bool = True) -> np.ndarray:
    """Per-sequence angle between final wrist displacements; NaN where the GT displacement is too short.
    pred/gt (N, T, 3); valid (N, T)."""
    p, g = _check_pair(pred_wrist, gt_wrist, 3)
    v = _valid(valid, p.shape[:-1])
    out = np.full(p.shape[0], np.nan)
    for i in range(p.shape[0]):
        idx = np.flatnonzero(v[i])
        if len(idx) < 2:
            continue
        dg = g[i, idx[-1]] - g[i, idx[0]]
        dp = p[i, idx[-1]] - p[i, idx[0]]
        ng, np_ = np.linalg.norm(dg), np.linalg.norm(dp)
        if ng < min_displacement:
            continue
        cos = 0.0 if np_ < min_displacement else float(np.clip(dg @ dp / (ng * np_), -1.0, 1.0))
        out[i] = np.arccos(cos)
    return np.degrees(out) if degrees else out


def mde(pred_wrist, gt_wrist, valid=None, min_displacement: float = 0.01, degrees: bool = True) -> float:
    """Mean direction error of the final wrist displacement (see module docstring)."""
    e = direction_errors(pred_wrist, gt_wrist, valid, min_displacement, degrees)
    return float(np.nanmean(e)) if np.isfinite(e).any() else float("nan")


METRIC_NAMES = ("MPJPE", "PA-MPJPE", "MWTE", "MDE")
METRIC_UNITS = {"MPJPE": "mm", "PA-MPJPE": "mm", "MWTE": "mm", "MDE": "deg"}


def motion_metrics(pred_joints, gt_joints, valid=None, min_displacement: float = 0.01) -> dict:
    """All four metrics for (N, T, 21, 3) joints (wrist = joint 0) and (N, T) valid frames."""
    p, g = _check_pair(pred_joints, gt_joints, 4)
    v = _valid(valid, p.shape[:2])
    dirs = direction_errors(p[..., 0, :], g[..., 0, :], v, min_displacement)
    return {"MPJPE": mpjpe(p, g, v), "PA-MPJPE": pa_mpjpe(p, g, v), "MWTE": mwte(p[..., 0, :], g[..., 0, :], v),
            "MDE": float(np.nanmean(dirs)) if np.isfinite(dirs).any() else float("nan"),
            "n": int(p.shape[0]), "frames": int(v.sum()), "mde_n": int(np.isfinite(dirs).sum())}


def evaluate_motion(pred_joints, gt_joints, domains: Sequence[str], valid=None, min_displacement: float = 0.01,
                    joint_source: str = GIVEN_JOINTS) -> dict[str, dict]:
    """Metrics per split: {"lab": {...}, "wild": {...}, "all": {...}} (splits with no sequence are left out).
    ``joint_source`` (where both sides' joints come from) is kept in every split's entry for the table."""
    p, g = _check_pair(pred_joints, gt_joints, 4)
    dom = np.asarray(list(domains))
    if dom.shape != (p.shape[0],):
        raise ValueError(f"need one domain per sequence ({p.shape[0]}), got {dom.shape}")
    v = _valid(valid, p.shape[:2])
    out = {}
    for split in ("lab", "wild"):
        sel = dom == split
        if sel.any():
            out[split] = motion_metrics(p[sel], g[sel], v[sel], min_displacement)
    out["all"] = motion_metrics(p, g, v, min_displacement)
    for m in out.values():
        m["joint_source"] = joint_source
    return out


def format_table(results: dict[str, dict], title: str = "Hand motion generation"):
    """A rich Table of evaluate_motion's results, captioned with the joints' source."""
    from rich.table import Table

    sources = sorted({m.get("joint_source", GIVEN_JOINTS) for m in results.values()})
    table = Table(title=title, caption=f"joints of prediction and ground truth: {'; '.join(sources)}")
    table.add_column("split")
    for name in METRIC_NAMES:
        table.add_column(f"{name} ({METRIC_UNITS[name]})", justify="right")
    table.add_column("sequences", justify="right")
    for split, m in results.items():
        table.add_row(split, *(f"{m[name]:.2f}" for name in METRIC_NAMES), str(m["n"]))
    return table


def print_table(results: dict[str, dict], title: str = "Hand motion generation") -> None:
    from rich.console import Console

    Console().print(format_table(results, title))


# -------------------------------------------------------------------------------------------- files
def load_motion_file(path: str | os.PathLike) -> dict:
    """Read a motion result npz: ``ids`` (N,) str, ``domain`` (N,) "lab"/"wild", and either ``joints``
    (N, T, 21, 3) [m] or ``motion`` (N, T, 99) (joints then come from the FK skeleton, with ``hand`` (N,)
    0 = left / 1 = right if given, else right); optional ``valid`` (N, T) bool and ``joint_source`` (a string
    naming where ``joints`` come from). Returns a dict with ids, domain, joints, valid, joint_source."""
    from .data.hand import HandSkeleton

    try:
        with np.load(path, allow_pickle=False) as z:
            a = {k: z[k] for k in z.files}
    except Exception as exc:
        raise ValueError(f"cannot read motion result file {path}: {type(exc).__name__}: {exc}") from exc
    for k in ("ids", "domain"):
        if k not in a:
            raise ValueError(f"{path}: missing array {k!r}")
    if "joints" in a:
        joints = a["joints"].astype(np.float64)
        source = str(a["joint_source"]) if "joint_source" in a else GIVEN_JOINTS
    elif "motion" in a:
        hands = a.get("hand", np.ones(len(a["ids"]), dtype=np.int64))
        sk = (HandSkeleton(hand="left"), HandSkeleton(hand="right"))
        joints = np.stack([sk[int(h)].joints(m) for h, m in zip(hands, a["motion"])])
        source = FK_JOINTS
    else:
        raise ValueError(f"{path}: needs a 'joints' or a 'motion' array")
    n = len(a["ids"])
    if joints.ndim != 4 or joints.shape[0] != n or joints.shape[-1] != 3:
        raise ValueError(f"{path}: joints must be (N={n}, T, J, 3), got {joints.shape}")
    valid = a.get("valid", np.ones(joints.shape[:2], dtype=bool)).astype(bool)
    return {"ids": a["ids"].astype(str), "domain": a["domain"].astype(str), "joints": joints, "valid": valid,
            "joint_source": source}


def evaluate_files(pred_path, gt_path, min_displacement: float = 0.01) -> dict[str, dict]:
    """Match predictions to ground truth by id and evaluate per split (ground truth's domain and valid). Files
    whose joints come from different sources (e.g. FK skeleton vs MANO) are refused."""
    pred, gt = load_motion_file(pred_path), load_motion_file(gt_path)
    if pred["joint_source"] != gt["joint_source"]:
        raise ValueError(f"prediction joints come from {pred['joint_source']!r} but ground-truth joints from "
                         f"{gt['joint_source']!r}: MPJPE/MWTE would include the skeleton mismatch; give both files "
                         "joints of the same source (e.g. only 'motion', for the FK skeleton on both sides)")
    pos = {sid: i for i, sid in enumerate(pred["ids"])}
    missing = [sid for sid in gt["ids"] if sid not in pos]
    if missing:
        raise ValueError(f"{len(missing)} ground-truth sequence(s) have no prediction, e.g. {missing[0]!r}")
    order = np.array([pos[sid] for sid in gt["ids"]])
    pj = pred["joints"][order]
    if pj.shape != gt["joints"].shape:
        raise ValueError(f"prediction joints {pj.shape} do not match ground truth {gt['joints'].shape}")
    valid = gt["valid"] & pred["valid"][order]
    return evaluate_motion(pj, gt["joints"], gt["domain"], valid, min_displacement, joint_source=gt["joint_source"])
