"""Human finger keypoints -> the Inspire RH56's six angles (0..1000), with dex-retargeting on the project's own URDF.

    from teleop.retarget import HandRetargeter, RetargetConfig
    rt = HandRetargeter(RetargetConfig(optimizer="vector"))
    angles = rt.retarget(sample.hand_keypoints)   # (6,) in HAND_DOF_NAMES order, within HAND_RANGE
    rt.reset()                                    # new episode / hand lost: forget the filter and warm start

Pipeline per call:

1. Check the keypoints: (21, 3), finite, metres, MANO / MediaPipe order (0 wrist; 1-4 thumb CMC, MCP, IP, tip;
   5-8 index MCP, PIP, DIP, tip; 9-12 middle; 13-16 ring; 17-20 pinky) of the operator's right hand (the robot
   hand is a right hand; ``human_hand="left"`` mirrors a left hand's keypoints onto a right hand). Anything else
   is a ``ValueError``.
2. Express them in the robot hand's frame (``keypoint_frame="palm"``, the default): origin at the wrist keypoint,
   +z from the wrist to the middle-finger MCP, +x from the index MCP towards the pinky MCP (made orthogonal to z),
   +y = z x x, the palm normal. That is the convention of the URDF's root link ``hand_base`` (and of the simulated
   hand), so the source's own wrist-frame orientation (Vision Pro, WebXR, MediaPipe) does not matter.
   ``keypoint_frame="hand_base"`` takes the keypoints as already in that frame (only the wrist is subtracted).
3. dex-retargeting (``RetargetingConfig.from_dict`` -> ``SeqRetargeting``) solves for the six actuated joints of
   ``teleop/assets/inspire_rh56_right.urdf`` (the coupled distal joints follow as mimic joints) so that the
   robot's wrist->fingertip vectors (``vector``), or those plus the fingertip-to-fingertip vectors with DexPilot's
   pinch prior (``dexpilot``), match the human's times ``scaling_factor``; its low-pass filter (``low_pass_alpha``)
   smooths the joint values; SLSQP is warm-started from the previous solution.
4. Joint angles -> Inspire units, the same rule as the simulated hand (``hardware.sim.devices.SimHand``):
   ``units_i = 1000 * (1 - q_i / HAND_CLOSED_ANGLE[i])``, clipped into ``HAND_RANGE`` (0..1000), where ``q_i`` is the
   angle of actuated joint ``HAND_ACTUATED_JOINTS[i]`` (``pinky_prox``, ``ring_prox``, ``middle_prox``,
   ``index_prox``, ``thumb_bend1``, ``thumb_rot``): 0 rad (open / extended) -> 1000, the closed angle (fingers
   1.45 rad, thumb bend 0.55 rad, thumb rotation 1.30 rad) -> 0. Inverse (what SimHand commands):
   ``q_i = HAND_CLOSED_ANGLE[i] * (1 - units_i / 1000)``.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from embodiment import HAND_DOF, HAND_DOF_NAMES, HAND_RANGE
from hardware.sim.scene import HAND_ACTUATED_JOINTS, HAND_CLOSED_ANGLE

from .inspire_urdf import ROOT_LINK, URDF_PATH

__all__ = ["HandRetargeter", "RetargetConfig", "NUM_KEYPOINTS", "FINGERTIP_LINKS", "FINGERTIP_KEYPOINTS",
           "joints_to_units", "units_to_joints", "keypoints_in_hand_frame"]

NUM_KEYPOINTS = 21
# MANO / MediaPipe keypoint indices
WRIST, THUMB_TIP, INDEX_MCP, INDEX_TIP, MIDDLE_MCP, MIDDLE_TIP, RING_TIP, PINKY_MCP, PINKY_TIP = (
    0, 4, 5, 8, 9, 12, 16, 17, 20)
# fingertip links of the URDF, in dex-retargeting's DexPilot order (thumb first), and the matching keypoints
FINGERTIP_LINKS = ("thumb_tip", "index_tip", "middle_tip", "ring_tip", "pinky_tip")
FINGERTIP_KEYPOINTS = (THUMB_TIP, INDEX_TIP, MIDDLE_TIP, RING_TIP, PINKY_TIP)
OPTIMIZERS = ("vector", "dexpilot")
KEYPOINT_FRAMES = ("palm", "hand_base")
HUMAN_HANDS = ("right", "left")

_CLOSED = np.asarray(HAND_CLOSED_ANGLE, dtype=np.float64)


def joints_to_units(q: np.ndarray) -> np.ndarray:
    """(6,) actuated joint angles [rad] (HAND_ACTUATED_JOINTS order) -> Inspire units, clipped into HAND_RANGE.
    The simulated hand's rule: units = 1000 * (1 - q / HAND_CLOSED_ANGLE)."""
    u = 1000.0 * (1.0 - np.asarray(q, dtype=np.float64) / _CLOSED)
    return np.clip(u, HAND_RANGE[0], HAND_RANGE[1])


def units_to_joints(units: np.ndarray) -> np.ndarray:
    """Inverse of :func:`joints_to_units` (what the simulated hand commands for ``units``)."""
    return _CLOSED * (1.0 - np.asarray(units, dtype=np.float64) / 1000.0)


def _check_keypoints(keypoints) -> np.ndarray:
    try:
        kp = np.asarray(keypoints, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"hand keypoints must be a ({NUM_KEYPOINTS}, 3) array of numbers: {exc}") from exc
    if kp.shape != (NUM_KEYPOINTS, 3):
        raise ValueError(f"hand keypoints must have shape ({NUM_KEYPOINTS}, 3) (MANO / MediaPipe order, metres), "
                         f"got {kp.shape}")
    if not np.all(np.isfinite(kp)):
        bad = sorted({int(i) for i in np.argwhere(~np.isfinite(kp))[:, 0]})
        raise ValueError(f"hand keypoints contain NaN or inf (keypoints {bad})")
    return kp


def keypoints_in_hand_frame(keypoints, frame: str = "palm", human_hand: str = "right") -> np.ndarray:
    """(21, 3) keypoints re-expressed in the robot hand frame (``hand_base`` convention, origin at the wrist): see
    the module docstring. ValueError for bad keypoints or a degenerate palm (wrist, index / middle / pinky MCPs
    collinear or coincident). ``human_hand="left"`` mirrors the keypoints (a left hand becomes a right hand; with
    ``frame="hand_base"`` the mirror is x -> -x of that frame)."""
    kp = _check_keypoints(keypoints)
    if human_hand not in HUMAN_HANDS:
        raise ValueError(f"human_hand must be one of {HUMAN_HANDS}, got {human_hand!r}")
    p = kp - kp[WRIST]
    if human_hand == "left":
        p = p * np.array([-1.0, 1.0, 1.0])
    if frame == "hand_base":
        return p
    if frame != "palm":
        raise ValueError(f"keypoint_frame must be one of {KEYPOINT_FRAMES}, got {frame!r}")
    z = p[MIDDLE_MCP]
    nz = np.linalg.norm(z)
    if nz < 1e-4:
        raise ValueError("degenerate hand keypoints: the middle-finger MCP coincides with the wrist")
    z = z / nz
    x = p[PINKY_MCP] - p[INDEX_MCP]
    x = x - x.dot(z) * z
    nx = np.linalg.norm(x)
    if nx < 1e-4:
        raise ValueError("degenerate hand keypoints: index and pinky MCPs do not span the palm")
    x = x / nx
    y = np.cross(z, x)
    rot = np.stack([x, y, z], axis=1)  # columns: hand axes in the source frame
    return p @ rot


@dataclass(frozen=True)
class RetargetConfig:
    """Retargeting settings.

    - ``optimizer``: "vector" (wrist->fingertip vectors) or "dexpilot" (adds fingertip-pair vectors and DexPilot's
      pinch projection, better thumb-finger pinches);
    - ``scaling_factor``: robot hand size / human hand size (human vectors are multiplied by it). Default 1.2: the
      model's fingertips are 0.19-0.20 m from the flange (all four fingers hinge at the same height), an adult's
      0.15-0.19 m from the wrist; too small a factor leaves an open human hand's short fingers (pinky) half closed
      on the robot, a larger one makes the robot close later. Tune per operator;
    - ``low_pass_alpha``: dex-retargeting's first-order filter on the joint values, y += alpha (x - y), per call; 1 or
      None disables it, smaller is smoother and lags more (0.5 at 30 Hz: ~50 ms time constant);
    - ``keypoint_frame``: "palm" (estimate the hand frame from the palm keypoints) or "hand_base" (keypoints already
      in the hand_base convention);
    - ``human_hand``: which operator hand the keypoints are of ("left" is mirrored onto the right robot hand);
    - ``huber_delta`` / ``normal_delta``: the optimiser's Huber loss width [m] and its regulariser towards the previous
      solution; ``project_dist`` / ``escape_dist``: DexPilot's pinch-projection thresholds [m];
    - ``urdf_path``: the hand URDF (default: the generated ``teleop/assets/inspire_rh56_right.urdf``)."""

    optimizer: str = "vector"
    scaling_factor: float = 1.2
    low_pass_alpha: float | None = 0.5
    keypoint_frame: str = "palm"
    human_hand: str = "right"
    huber_delta: float = 0.02
    normal_delta: float = 4e-3
    project_dist: float = 0.03
    escape_dist: float = 0.05
    urdf_path: str | None = None

    def __post_init__(self):
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {OPTIMIZERS}, got {self.optimizer!r}")
        if self.keypoint_frame not in KEYPOINT_FRAMES:
            raise ValueError(f"keypoint_frame must be one of {KEYPOINT_FRAMES}, got {self.keypoint_frame!r}")
        if self.human_hand not in HUMAN_HANDS:
            raise ValueError(f"human_hand must be one of {HUMAN_HANDS}, got {self.human_hand!r}")
        if not (np.isfinite(self.scaling_factor) and self.scaling_factor > 0):
            raise ValueError(f"scaling_factor must be > 0, got {self.scaling_factor}")
        if self.low_pass_alpha is not None and not (0.0 < self.low_pass_alpha <= 1.0):
            raise ValueError(f"low_pass_alpha must be in (0, 1] or None, got {self.low_pass_alpha}")

    def dex_config(self) -> dict:
        """The dex-retargeting config dict (what its yml files hold under ``retargeting:``)."""
        urdf = str(Path(self.urdf_path).resolve() if self.urdf_path else URDF_PATH)
        cfg = {
            "urdf_path": urdf,
            "target_joint_names": list(HAND_ACTUATED_JOINTS),
            "scaling_factor": float(self.scaling_factor),
            "low_pass_alpha": -1.0 if self.low_pass_alpha in (None, 1.0) else float(self.low_pass_alpha),
            "huber_delta": float(self.huber_delta),
            "normal_delta": float(self.normal_delta),
        }
        if self.optimizer == "vector":
            cfg.update(type="vector",
                       target_origin_link_names=[ROOT_LINK] * len(FINGERTIP_LINKS),
                       target_task_link_names=list(FINGERTIP_LINKS),
                       target_link_human_indices=[[WRIST] * len(FINGERTIP_KEYPOINTS), list(FINGERTIP_KEYPOINTS)])
        else:
            # DexPilot derives its vectors (tip pairs, then wrist->tips) and the human indices (4 * link index:
            # wrist 0, tips 4, 8, 12, 16, 20) from the link order [wrist] + tips, thumb first.
            cfg.update(type="dexpilot", wrist_link_name=ROOT_LINK, finger_tip_link_names=list(FINGERTIP_LINKS),
                       project_dist=float(self.project_dist), escape_dist=float(self.escape_dist))
        return cfg


class HandRetargeter:
    """Human hand keypoints (21, 3) -> Inspire RH56 angles (6,) in 0..1000. Stateful (warm start, low-pass filter,
    DexPilot's pinch state): one instance per operator hand, ``reset()`` between episodes or when tracking is lost."""

    def __init__(self, config: RetargetConfig | None = None):
        from dex_retargeting.retargeting_config import RetargetingConfig

        self.config = config or RetargetConfig()
        self._dex_config = RetargetingConfig.from_dict(self.config.dex_config())
        self._seq = self._dex_config.build()
        opt = self._seq.optimizer
        self._human_idx = np.asarray(opt.target_link_human_indices, dtype=int)  # (2, n): origin, task
        names = self._seq.joint_names  # pinocchio dof order (actuated + mimic joints)
        self._qidx = np.array([names.index(j) for j in HAND_ACTUATED_JOINTS])
        lim = opt.robot.joint_limits[self._qidx]
        if not (np.allclose(lim[:, 0], 0.0) and np.allclose(lim[:, 1], _CLOSED)):
            raise ValueError(f"URDF {self._dex_config.urdf_path}: actuated joint ranges {lim.tolist()} differ from "
                             f"the hand model's 0..HAND_CLOSED_ANGLE {_CLOSED.tolist()}; regenerate it "
                             "(python -m teleop.inspire_urdf)")
        self._initial_last_qpos = np.array(self._seq.last_qpos, copy=True)
        self.last_qpos: np.ndarray | None = None  # full robot joint vector of the last call (pinocchio order)
        self.last_units: np.ndarray | None = None

    @property
    def joint_names(self) -> list[str]:
        """The URDF's joint names in the order of ``last_qpos``."""
        return list(self._seq.joint_names)

    @property
    def dof_names(self) -> tuple[str, ...]:
        return HAND_DOF_NAMES

    def reference(self, keypoints) -> np.ndarray:
        """The human vectors the optimiser matches (before scaling): (n, 3) in the hand frame."""
        p = keypoints_in_hand_frame(keypoints, self.config.keypoint_frame, self.config.human_hand)
        return p[self._human_idx[1]] - p[self._human_idx[0]]

    def retarget_joints(self, keypoints) -> np.ndarray:
        """(6,) actuated joint angles [rad] in HAND_ACTUATED_JOINTS order (filtered, within the joint limits)."""
        ref = self.reference(keypoints)
        qpos = np.asarray(self._seq.retarget(ref), dtype=np.float64)
        self.last_qpos = qpos
        return np.clip(qpos[self._qidx], 0.0, _CLOSED)

    def retarget(self, keypoints) -> np.ndarray:
        """(21, 3) keypoints (MANO order, metres, right hand) -> (6,) Inspire angles in HAND_DOF_NAMES order
        (pinky, ring, middle, index, thumb_bend, thumb_rotation), float64 within HAND_RANGE (1000 = open).
        ValueError for a wrong shape, NaN / inf or a degenerate palm (the state is left unchanged)."""
        units = joints_to_units(self.retarget_joints(keypoints))
        assert units.shape == (HAND_DOF,)
        self.last_units = units
        return units.copy()

    def reset(self) -> None:
        """Forget the previous solution (warm start back to mid-range), the low-pass filter and DexPilot's pinch
        state."""
        self._seq.reset()
        self._seq.last_qpos = self._initial_last_qpos.copy()
        if self._seq.filter is not None:
            self._seq.filter.reset()
        projected = getattr(self._seq.optimizer, "projected", None)
        if projected is not None:
            projected[:] = False
        self.last_qpos = None
        self.last_units = None
