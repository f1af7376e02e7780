"""Damped-least-squares inverse kinematics for the FR3 on the simulator's own model (a private MjData, so the
running simulation is not touched)."""
from __future__ import annotations

import mujoco
import numpy as np

from embodiment import FR3_Q_MAX, FR3_Q_MIN


def rot_error(target: np.ndarray, current: np.ndarray) -> np.ndarray:
    """Rotation vector (world frame) taking ``current`` to ``target`` (3x3 matrices)."""
    r = target @ current.T
    q = np.zeros(4)
    mujoco.mju_mat2Quat(q, r.reshape(-1))
    v = np.zeros(3)
    mujoco.mju_quat2Vel(v, q, 1.0)
    return v


class ArmIK:
    def __init__(self, model: mujoco.MjModel, arm_qadr, arm_dadr, site: str = "grasp_site",
                 q_rest: np.ndarray | None = None, damping: float = 0.03, margin: float = 0.05):
        self.model = model
        self.data = mujoco.MjData(model)
        self.qadr = np.asarray(arm_qadr)
        self.dadr = np.asarray(arm_dadr)
        self.site = model.site(site).id
        self.q_rest = q_rest
        self.damping = damping
        self.low = np.asarray(FR3_Q_MIN) + margin
        self.high = np.asarray(FR3_Q_MAX) - margin
        self._jp = np.zeros((3, model.nv))
        self._jr = np.zeros((3, model.nv))

    def fk(self, q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        self.data.qpos[self.qadr] = q
        mujoco.mj_kinematics(self.model, self.data)
        return self.data.site_xpos[self.site].copy(), self.data.site_xmat[self.site].reshape(3, 3).copy()

    def solve(self, pos: np.ndarray, rot: np.ndarray, q0: np.ndarray, iters: int = 30, tol: float = 1e-4,
              rot_weight: float = 0.5) -> tuple[np.ndarray, float]:
        """Joint angles reaching site pose (pos, rot) starting from q0; returns (q, residual position error)."""
        q = np.clip(np.array(q0, dtype=np.float64), self.low, self.high)
        w = np.array([1, 1, 1, rot_weight, rot_weight, rot_weight], dtype=np.float64)
        err_p = np.inf
        for _ in range(iters):
            p, r = self.fk(q)
            e = np.concatenate([pos - p, rot_error(rot, r)])
            err_p = float(np.linalg.norm(e[:3]))
            if err_p < tol and np.linalg.norm(e[3:]) < 10 * tol:
                break
            mujoco.mj_comPos(self.model, self.data)
            mujoco.mj_jacSite(self.model, self.data, self._jp, self._jr, self.site)
            jac = np.vstack([self._jp[:, self.dadr], self._jr[:, self.dadr]]) * w[:, None]
            ew = e * w
            jjt = jac @ jac.T + (self.damping ** 2) * np.eye(6)
            dq = jac.T @ np.linalg.solve(jjt, ew)
            if self.q_rest is not None:
                pinv = jac.T @ np.linalg.solve(jjt, np.eye(6))
                null = np.eye(len(q)) - pinv @ jac
                dq += null @ (0.1 * (self.q_rest - q))
            n = np.linalg.norm(dq)
            if n > 0.3:
                dq *= 0.3 / n
            q = np.clip(q + dq, self.low, self.high)
        return q, err_p
