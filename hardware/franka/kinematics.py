"""FR3 forward kinematics from Franka's published DH table (Craig / modified DH convention), numpy only.

Used by the safety gate to check Cartesian workspace limits *before* anything is sent, so it must not need a
robot connection. The table (a [m], d [m], alpha [rad]) per joint, then the flange (link 8):

    joint   a        d       alpha
    1       0        0.333    0
    2       0        0       -pi/2
    3       0        0.316    pi/2
    4       0.0825   0        pi/2
    5      -0.0825   0.384   -pi/2
    6       0        0        pi/2
    7       0.088    0        pi/2
    flange  0        0.107    0      (theta = 0)

The test suite checks this against the pose franky-sim reports over the libfranka protocol.
"""
from __future__ import annotations

import numpy as np

# (a, d, alpha) for joints 1..7 and the flange.
FR3_DH = np.array(
    [
        [0.0, 0.333, 0.0],
        [0.0, 0.0, -np.pi / 2],
        [0.0, 0.316, np.pi / 2],
        [0.0825, 0.0, np.pi / 2],
        [-0.0825, 0.384, -np.pi / 2],
        [0.0, 0.0, np.pi / 2],
        [0.088, 0.0, np.pi / 2],
    ]
)
FR3_FLANGE_D = 0.107

# Flange -> Franka Hand TCP (what libfranka reports as F_T_EE when the Franka Hand is configured): rotation of
# -45 deg about z and 0.1034 m along z. The JALA arm carries an Inspire hand instead, so this is only a default.
FRANKA_HAND_F_T_EE = np.array(
    [
        [np.cos(-np.pi / 4), -np.sin(-np.pi / 4), 0.0, 0.0],
        [np.sin(-np.pi / 4), np.cos(-np.pi / 4), 0.0, 0.0],
        [0.0, 0.0, 1.0, 0.1034],
        [0.0, 0.0, 0.0, 1.0],
    ]
)


def _mdh(a: float, d: float, alpha: float, theta: np.ndarray) -> np.ndarray:
    """Modified-DH link transforms for a batch of angles: RotX(alpha) TransX(a) RotZ(theta) TransZ(d)."""
    ct, st = np.cos(theta), np.sin(theta)
    ca, sa = np.cos(alpha), np.sin(alpha)
    n = theta.shape[0]
    T = np.zeros((n, 4, 4))
    T[:, 0, 0] = ct
    T[:, 0, 1] = -st
    T[:, 0, 3] = a
    T[:, 1, 0] = st * ca
    T[:, 1, 1] = ct * ca
    T[:, 1, 2] = -sa
    T[:, 1, 3] = -sa * d
    T[:, 2, 0] = st * sa
    T[:, 2, 1] = ct * sa
    T[:, 2, 2] = ca
    T[:, 2, 3] = ca * d
    T[:, 3, 3] = 1.0
    return T


def fr3_flange_poses(q: np.ndarray) -> np.ndarray:
    """Base -> flange transforms. ``q`` is (7,) or (N, 7); returns (4, 4) or (N, 4, 4)."""
    q = np.asarray(q, dtype=np.float64)
    single = q.ndim == 1
    qb = np.atleast_2d(q)
    if qb.shape[1] != 7:
        raise ValueError(f"FR3 forward kinematics needs 7 joint angles, got shape {q.shape}")
    T = np.broadcast_to(np.eye(4), (qb.shape[0], 4, 4)).copy()
    for i, (a, d, alpha) in enumerate(FR3_DH):
        T = T @ _mdh(a, d, alpha, qb[:, i])
    T = T @ _mdh(0.0, FR3_FLANGE_D, 0.0, np.zeros(qb.shape[0]))
    return T[0] if single else T


def fr3_forward_kinematics(q: np.ndarray, flange_to_tcp: np.ndarray | None = None) -> np.ndarray:
    """Base -> TCP transform(s): flange pose times ``flange_to_tcp`` (4x4, identity when None)."""
    T = fr3_flange_poses(q)
    if flange_to_tcp is not None:
        T = T @ np.asarray(flange_to_tcp, dtype=np.float64)
    return T
