"""Reconstruction metrics of the motion tokenizer.

``reconstruction_metrics(gt, pred)`` for (N, 15, 99) chunks returns:
    wrist_mse, finger_mse      mean squared error of each part's raw values (rot6d and metres)
    wrist_rot_deg              mean geodesic angle between wrist rotations [deg]
    finger_rot_deg             mean geodesic angle between finger joint (local) rotations [deg]
    wrist_trans_mm             mean wrist translation error [mm]
    mpjpe_mm, pa_mpjpe_mm      on the 21 joints of the FK skeleton (training/data/hand.py, right-hand bones)
"""
from __future__ import annotations

import numpy as np
import torch

from ..data.hand import (FINGER_SLICE, WRIST_ROT_SLICE, WRIST_SLICE, WRIST_TRANS_SLICE, HandSkeleton, geodesic_angle,
                         rot6d_to_matrix)
from ..metrics import MM, mpjpe, pa_mpjpe


def reconstruction_metrics(gt, pred, skeleton: HandSkeleton | None = None) -> dict[str, float]:
    g = np.asarray(gt.detach().cpu() if isinstance(gt, torch.Tensor) else gt, np.float64)
    p = np.asarray(pred.detach().cpu() if isinstance(pred, torch.Tensor) else pred, np.float64)
    if g.shape != p.shape or g.shape[-1] != 99:
        raise ValueError(f"gt and pred must both be (..., 99), got {g.shape} and {p.shape}")
    sk = skeleton or HandSkeleton()
    gf = g[..., FINGER_SLICE].reshape(*g.shape[:-1], 15, 6)
    pf = p[..., FINGER_SLICE].reshape(*p.shape[:-1], 15, 6)
    gj, pj = sk.joints(g), sk.joints(p)
    return {
        "wrist_mse": float(((g[..., WRIST_SLICE] - p[..., WRIST_SLICE]) ** 2).mean()),
        "finger_mse": float(((g[..., FINGER_SLICE] - p[..., FINGER_SLICE]) ** 2).mean()),
        "wrist_rot_deg": float(np.degrees(geodesic_angle(rot6d_to_matrix(g[..., WRIST_ROT_SLICE]),
                                                         rot6d_to_matrix(p[..., WRIST_ROT_SLICE]))).mean()),
        "finger_rot_deg": float(np.degrees(geodesic_angle(rot6d_to_matrix(gf), rot6d_to_matrix(pf))).mean()),
        "wrist_trans_mm": float(np.linalg.norm(g[..., WRIST_TRANS_SLICE] - p[..., WRIST_TRANS_SLICE],
                                               axis=-1).mean() * MM),
        "mpjpe_mm": mpjpe(pj, gj),
        "pa_mpjpe_mm": pa_mpjpe(pj, gj),
    }
