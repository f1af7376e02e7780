"""GraspAssist: welds a grasped object to the palm of the simulated hand while the hand is closed on it."""
from __future__ import annotations

from typing import TYPE_CHECKING

import mujoco
import numpy as np

if TYPE_CHECKING:
    from .world import SimWorld


class GraspAssist:
    """Stands in for friction-limited grasp stability of primitive fingers: when the hand is commanded closed
    (mean of the pinky/ring/middle/thumb-bend targets below ``close_below``) and a hand geom touches a graspable
    body whose grasp point is within ``radius`` of the hand's grasp site, that body is welded to the palm at its
    current relative pose. Opening the hand (mean target above ``open_above``) releases it. Fingers still
    close and collide physically; only slip is removed."""

    close_below = 700.0
    position_only = ("drawer",)
    open_above = 850.0

    def __init__(self, world: "SimWorld", enabled: bool = True):
        self.world = world
        self.enabled = enabled
        m = world.model
        self.eq = {}
        for i in range(m.neq):
            name = m.equality(i).name
            if name.startswith("grasp_"):
                self.eq[name[len("grasp_"):]] = i
        self.hand_bodies = set()
        hb = m.body("hand_base").id
        for b in range(m.nbody):
            x = b
            while x != 0:
                if x == hb:
                    self.hand_bodies.add(b)
                    break
                x = m.body_parentid[x]
        self.radius = {"bottle": 0.09, "drawer": 0.08, "fruit1": 0.08, "fruit2": 0.09, "fruit3": 0.08,
                       "cloth": 0.09}
        self.held: str | None = None

    def holding(self, body: str) -> bool:
        return self.held == body

    def reset(self):
        self.release()

    def _grasp_point(self, body: str) -> np.ndarray:
        m, d = self.world.model, self.world.data
        if body == "drawer":
            return d.site_xpos[m.site("handle").id]
        return d.xipos[m.body(body).id]

    def _touching(self, body: str) -> bool:
        m, d = self.world.model, self.world.data
        bid = m.body(body).id
        for i in range(d.ncon):
            c = d.contact[i]
            b1, b2 = m.geom_bodyid[c.geom1], m.geom_bodyid[c.geom2]
            if (b1 == bid and b2 in self.hand_bodies) or (b2 == bid and b1 in self.hand_bodies):
                return True
            # bodies attached to the object (e.g. the bottle trigger) count as the object
            if (m.body_parentid[b1] == bid and b2 in self.hand_bodies) or \
               (m.body_parentid[b2] == bid and b1 in self.hand_bodies):
                return True
        return False

    def update(self):
        if not self.enabled:
            return
        w = self.world
        m, d = w.model, w.data
        t = w.hand_ctrl.target
        grip = float(np.mean(t[[0, 1, 2, 4]]))
        if self.held is not None:
            if grip > self.open_above:
                self.release()
            return
        if grip > self.close_below:
            return
        site = d.site_xpos[m.site("grasp_site").id]
        for body, eq in self.eq.items():
            if np.linalg.norm(self._grasp_point(body) - site) > self.radius.get(body, 0.08):
                continue
            if not self._touching(body):
                continue
            self.attach(body)
            return

    def attach(self, body: str) -> None:
        """Weld ``body`` to the palm at its current relative pose (what a successful grasp does)."""
        m, d = self.world.model, self.world.data
        if body not in self.eq:
            raise ValueError(f"{body!r} is not graspable here; graspable: {sorted(self.eq)}")
        self.release()
        eq = self.eq[body]
        b1, b2 = m.body("hand_base").id, m.body(body).id
        r1 = d.xmat[b1].reshape(3, 3)
        rel_pos = r1.T @ (d.xpos[b2] - d.xpos[b1])
        q1inv = np.zeros(4)
        mujoco.mju_negQuat(q1inv, d.xquat[b1])
        rel_q = np.zeros(4)
        mujoco.mju_mulQuat(rel_q, q1inv, d.xquat[b2])
        # weld data: anchor (3, in body2), relpose pos (3), relpose quat (4), torquescale
        m.eq_data[eq, 0:3] = 0.0
        m.eq_data[eq, 3:6] = rel_pos
        m.eq_data[eq, 6:10] = rel_q
        # articulated objects (the drawer) are held by position only, so the grip does not fight the slide
        m.eq_data[eq, 10] = 0.0 if body in self.position_only else 1.0
        d.eq_active[eq] = 1
        self.held = body

    def release(self) -> None:
        for i in self.eq.values():
            self.world.data.eq_active[i] = 0
        self.held = None

