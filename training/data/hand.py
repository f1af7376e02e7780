"""Hand-motion layout, 6-D rotations and a simple forward-kinematics hand skeleton.

Per-frame hand motion vector (99-D, the Being-H0 canonical layout)::

    [ 0:90]  15 finger joints x rot6d, MANO pose order: index1-3, middle1-3, pinky1-3, ring1-3, thumb1-3
             (each joint's rotation relative to its parent joint)
    [90:96]  wrist (global) rotation, rot6d
    [96:99]  wrist translation [m] in the (canonical) camera frame

The *wrist part* of the tokenizer is ``[90:99]`` (9-D), the *finger part* ``[0:90]`` (90-D).

rot6d convention (as pytorch3d's ``matrix_to_rotation_6d``): the first two **rows** of the rotation matrix,
``R[..., :2, :].reshape(6)``; decoding orthonormalises them with Gram-Schmidt and the third row is their cross
product. Any 6-vector whose two halves are non-zero and not parallel decodes to a valid rotation.

Skeleton (:class:`HandSkeleton`): 21 joints = wrist (0), then the 15 rotational joints in the MANO pose order
above (1..15), then the 5 finger tips in the same finger order (16..20: index, middle, pinky, ring, thumb).
The default rest offsets are an approximate adult right hand in metres (fingers along +x, palm normal -y,
thumb towards +z); the left hand mirrors z. It is NOT MANO: metrics on joints from this skeleton are
comparable with each other, not with MANO-regressed joints. Pass your own ``rest_offsets`` (e.g. MANO's
mean-shape joints expressed relative to their parents) to match a MANO evaluation.
"""
from __future__ import annotations

import numpy as np
import torch

MOTION_DIM = 99
NUM_FINGER_JOINTS = 15
FINGER_SLICE = slice(0, 90)
WRIST_ROT_SLICE = slice(90, 96)
WRIST_TRANS_SLICE = slice(96, 99)
WRIST_SLICE = slice(90, 99)
WRIST_DIM, FINGER_DIM = 9, 90
NUM_JOINTS = 21
FINGER_NAMES = ("index", "middle", "pinky", "ring", "thumb")
HANDS = ("left", "right")  # index 0 = left, 1 = right (as jala_policy.perceiver.LEFT_HAND / RIGHT_HAND)

# parent of each of the 21 joints (-1 for the wrist)
JOINT_PARENTS = tuple([-1] + [p for f in range(5) for p in (0, 1 + 3 * f, 2 + 3 * f)] + [3 + 3 * f for f in range(5)])


# --------------------------------------------------------------------------------------------- rotations
def _as_tensor(x) -> tuple[torch.Tensor, bool]:
    if isinstance(x, torch.Tensor):
        return x, False
    return torch.as_tensor(np.asarray(x, dtype=np.float64)), True


def rot6d_to_matrix(d6):
    """(..., 6) -> (..., 3, 3) rotation matrices (Gram-Schmidt on the two rows). numpy in -> numpy out."""
    x, was_np = _as_tensor(d6)
    a1, a2 = x[..., :3], x[..., 3:6]
    b1 = torch.nn.functional.normalize(a1, dim=-1)
    b2 = torch.nn.functional.normalize(a2 - (b1 * a2).sum(-1, keepdim=True) * b1, dim=-1)
    b3 = torch.cross(b1, b2, dim=-1)
    r = torch.stack((b1, b2, b3), dim=-2)
    return r.numpy() if was_np else r


def matrix_to_rot6d(r):
    """(..., 3, 3) -> (..., 6): the first two rows. numpy in -> numpy out."""
    x, was_np = _as_tensor(r)
    out = x[..., :2, :].reshape(*x.shape[:-2], 6)
    return out.numpy() if was_np else out


def canonicalize_rot6d(d6):
    """Re-orthonormalise rot6d vectors (e.g. a decoder's raw output) so they are exact rotation rows."""
    return matrix_to_rot6d(rot6d_to_matrix(d6))


def axis_angle_to_matrix(aa):
    """(..., 3) axis-angle (Rodrigues) -> (..., 3, 3). numpy in -> numpy out."""
    x, was_np = _as_tensor(aa)
    angle = x.norm(dim=-1, keepdim=True)
    axis = x / angle.clamp_min(1e-12)
    kx, ky, kz = axis.unbind(-1)
    zero = torch.zeros_like(kx)
    k = torch.stack([zero, -kz, ky, kz, zero, -kx, -ky, kx, zero], dim=-1).reshape(*x.shape[:-1], 3, 3)
    eye = torch.eye(3, dtype=x.dtype).expand_as(k)
    s, c = torch.sin(angle)[..., None], torch.cos(angle)[..., None]
    r = eye + s * k + (1 - c) * (k @ k)
    return r.numpy() if was_np else r


def geodesic_angle(r1, r2):
    """Angle [rad] of R1^T R2 for (..., 3, 3) matrices. numpy in -> numpy out."""
    a, was_np = _as_tensor(r1)
    b, _ = _as_tensor(r2)
    b = b.to(a.dtype)
    tr = (a.transpose(-1, -2) @ b).diagonal(dim1=-2, dim2=-1).sum(-1)
    ang = torch.acos(((tr - 1) / 2).clamp(-1.0, 1.0))
    return ang.numpy() if was_np else ang


def rot6d_is_valid(d6, eps: float = 1e-6) -> np.ndarray:
    """Boolean (...) : both halves non-zero, finite and not parallel (so they decode to a rotation)."""
    x = np.asarray(d6, dtype=np.float64)
    a1, a2 = x[..., :3], x[..., 3:6]
    n1, n2 = np.linalg.norm(a1, axis=-1), np.linalg.norm(a2, axis=-1)
    cross = np.linalg.norm(np.cross(a1, a2), axis=-1)
    finite = np.isfinite(x).all(-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return finite & (n1 > eps) & (n2 > eps) & (cross > eps * np.maximum(n1 * n2, eps))


def identity_motion(num_frames: int, translation=(0.0, 0.0, 0.5)) -> np.ndarray:
    """(T, 99) motion with every rotation the identity and a fixed wrist translation."""
    eye6 = np.array([1, 0, 0, 0, 1, 0], dtype=np.float32)
    m = np.zeros((num_frames, MOTION_DIM), dtype=np.float32)
    m[:, FINGER_SLICE] = np.tile(eye6, NUM_FINGER_JOINTS)
    m[:, WRIST_ROT_SLICE] = eye6
    m[:, WRIST_TRANS_SLICE] = np.asarray(translation, dtype=np.float32)
    return m


# ---------------------------------------------------------------------------------------------- skeleton
def default_rest_offsets(hand: str = "right") -> np.ndarray:
    """(21, 3) offset of each joint from its parent in the parent's rest frame [m]; wrist row is zero."""
    fingers = {  # base offset from the wrist, then the two phalanx lengths and the tip length (along +x)
        "index": ((0.088, 0.005, 0.025), (0.035, 0.025, 0.022)),
        "middle": ((0.092, 0.005, 0.003), (0.040, 0.028, 0.024)),
        "pinky": ((0.075, 0.000, -0.038), (0.028, 0.020, 0.019)),
        "ring": ((0.085, 0.003, -0.018), (0.037, 0.026, 0.022)),
        "thumb": ((0.025, -0.010, 0.030), (0.034, 0.030, 0.025)),
    }
    off = np.zeros((NUM_JOINTS, 3))
    for f, name in enumerate(FINGER_NAMES):
        base, lengths = fingers[name]
        direction = np.array([1.0, 0.0, 0.6]) / np.linalg.norm([1.0, 0.0, 0.6]) if name == "thumb" else np.array(
            [1.0, 0.0, 0.0])
        off[1 + 3 * f] = base
        off[2 + 3 * f] = lengths[0] * direction
        off[3 + 3 * f] = lengths[1] * direction
        off[16 + f] = lengths[2] * direction
    if hand == "left":
        off[:, 2] *= -1
    elif hand != "right":
        raise ValueError(f"hand must be 'left' or 'right', got {hand!r}")
    return off


class HandSkeleton:
    """Forward kinematics of the 99-D motion vector into 21 joint positions (see module docstring)."""

    def __init__(self, rest_offsets: np.ndarray | None = None, hand: str = "right"):
        off = default_rest_offsets(hand) if rest_offsets is None else np.asarray(rest_offsets, dtype=np.float64)
        if off.shape != (NUM_JOINTS, 3):
            raise ValueError(f"rest_offsets must be (21, 3), got {off.shape}")
        self.rest_offsets = off
        self.hand = hand

    def joints(self, motion):
        """(..., 99) motion -> (..., 21, 3) joint positions (same units as the wrist translation).
        numpy in -> numpy out."""
        x, was_np = _as_tensor(motion)
        if x.shape[-1] != MOTION_DIM:
            raise ValueError(f"motion must have {MOTION_DIM} dims per frame, got {x.shape[-1]}")
        off = torch.as_tensor(self.rest_offsets, dtype=x.dtype, device=x.device)
        local = rot6d_to_matrix(x[..., FINGER_SLICE].reshape(*x.shape[:-1], NUM_FINGER_JOINTS, 6))
        g_wrist = rot6d_to_matrix(x[..., WRIST_ROT_SLICE])
        pos = [x[..., WRIST_TRANS_SLICE]]
        glob = [g_wrist]
        for j in range(1, NUM_JOINTS):
            p = JOINT_PARENTS[j]
            pos.append(pos[p] + (glob[p] @ off[j].unsqueeze(-1)).squeeze(-1))
            glob.append(glob[p] @ local[..., j - 1, :, :] if j <= NUM_FINGER_JOINTS else glob[p])
        out = torch.stack(pos, dim=-2)
        return out.numpy() if was_np else out
