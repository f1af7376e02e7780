"""The three real-robot tasks of JALA (supplementary B.2) as simulator tasks: per-episode randomisation from a
seed, subtask detectors computed from simulator state, and the Completion Ratio.

Subtasks are counted the way the paper decomposes each task and latch in order: subtask k can only complete
after subtasks 1..k-1 have completed (e.g. closing the drawer only counts after the fruits are in; the drawer
is closed at the start of an episode). Each detector is also available un-latched (``conditions``) for tests.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from .scene import ink_layout

if TYPE_CHECKING:  # pragma: no cover
    from .world import SimWorld

INSTRUCTIONS = {
    "water_plant": "Grasp the spray bottle, move it in front of the plant and pull the trigger to water the plant.",
    "put_three_obj": "Open the drawer, put the three fruits into the drawer, then close the drawer.",
    "wipe_board": "Grasp the cloth and wipe the pen marks off the whiteboard.",
}


@dataclass(frozen=True)
class Completion:
    task: str
    subtasks: tuple[str, ...]
    done: tuple[bool, ...]
    done_at: tuple[float | None, ...] = ()  # sim time each subtask latched

    @property
    def n_done(self) -> int:
        return int(sum(self.done))

    @property
    def ratio(self) -> float:
        return self.n_done / len(self.subtasks)

    @property
    def success(self) -> bool:
        return all(self.done)


def _yaw_quat(yaw: float) -> np.ndarray:
    return np.array([math.cos(yaw / 2), 0.0, 0.0, math.sin(yaw / 2)])


def yaw_of(xmat: np.ndarray) -> float:
    m = np.asarray(xmat).reshape(3, 3)
    return math.atan2(m[1, 0], m[0, 0])


class Task:
    name: str = ""
    subtasks: tuple[str, ...] = ()
    cameras: tuple[str, ...] = ("camera_front",)
    episode_seconds: float = 30.0

    def __init__(self, world: "SimWorld", variant: str):
        self.world = world
        self.variant = variant
        self.done = [False] * len(self.subtasks)
        self.done_at: list[float | None] = [None] * len(self.subtasks)

    @property
    def instruction(self) -> str:
        return INSTRUCTIONS[self.name]

    # ---- hooks
    def scene_kwargs(self, rng: np.random.Generator) -> dict:
        """Build-time randomisation (things that need a new model, e.g. ink mark layout)."""
        return {}

    def randomize(self, rng: np.random.Generator) -> None:
        """Place objects for a new episode (qpos of free joints, static body positions)."""

    def update(self) -> None:
        """Called every task tick (after physics) before the detectors: stateful effects (ink, spray)."""

    def conditions(self) -> list[bool]:
        """Un-latched detector per subtask on the current state."""
        raise NotImplementedError

    # ---- shared
    def reset_progress(self) -> None:
        self.done = [False] * len(self.subtasks)
        self.done_at = [None] * len(self.subtasks)

    def tick(self) -> None:
        self.update()
        conds = self.conditions()
        for k, c in enumerate(conds):
            if self.done[k]:
                continue
            if c and all(self.done[:k]):
                self.done[k] = True
                self.done_at[k] = float(self.world.data.time)
            break  # in order: only the first not-yet-done subtask can latch

    def completion(self) -> Completion:
        return Completion(self.name, self.subtasks, tuple(self.done), tuple(self.done_at))

    # helpers
    def set_free_pose(self, body: str, pos, yaw: float = 0.0, quat=None) -> None:
        w = self.world
        j = w.model.body(body).jntadr[0]
        adr = w.model.jnt_qposadr[j]
        w.data.qpos[adr:adr + 3] = pos
        w.data.qpos[adr + 3:adr + 7] = _yaw_quat(yaw) if quat is None else quat
        dadr = w.model.jnt_dofadr[j]
        w.data.qvel[dadr:dadr + 6] = 0.0

    def set_static_pos(self, body: str, pos) -> None:
        self.world.model.body_pos[self.world.model.body(body).id] = pos

    def lifted(self, body: str, height: float) -> bool:
        return float(self.world.data.xpos[self.world.model.body(body).id][2]) > height


# ------------------------------------------------------------------------------------------- water plant
class WaterPlant(Task):
    name = "water_plant"
    subtasks = ("grasp_bottle", "bottle_in_front_of_plant", "spray_plant")
    episode_seconds = 30.0
    spray_distance = 0.32  # nozzle within this of the plant foliage [m]
    spray_angle_deg = 25.0  # nozzle axis within this of the direction to the plant
    trigger_pressed = 0.006  # trigger travel [m] (range 0..0.012) that produces a spray

    def randomize(self, rng):
        self.set_free_pose("bottle", [rng.uniform(0.42, 0.50), rng.uniform(-0.15, 0.0), 0.0],
                           yaw=rng.uniform(-0.3, 0.3))
        self.set_static_pos("plant", [rng.uniform(0.74, 0.82), rng.uniform(-0.2, 0.1), 0.0])
        w = self.world
        w.data.qpos[w.model.joint("trigger_joint").qposadr[0]] = 0.0

    def nozzle(self) -> tuple[np.ndarray, np.ndarray]:
        d, m = self.world.data, self.world.model
        sid = m.site("nozzle").id
        return d.site_xpos[sid].copy(), d.site_xmat[sid].reshape(3, 3)[:, 0].copy()

    def aimed(self) -> bool:
        d, m = self.world.data, self.world.model
        p, axis = self.nozzle()
        target = d.site_xpos[m.site("plant_target").id]
        v = target - p
        dist = float(np.linalg.norm(v))
        if dist > self.spray_distance or dist < 1e-6:
            return False
        return float(np.dot(v / dist, axis)) > math.cos(math.radians(self.spray_angle_deg))

    def trigger_angle(self) -> float:
        w = self.world
        return float(w.data.qpos[w.model.joint("trigger_joint").qposadr[0]])

    def spraying(self) -> bool:
        return self.trigger_angle() > self.trigger_pressed

    def update(self):
        m = self.world.model
        m.geom_rgba[m.geom("spray").id, 3] = 0.45 if self.spraying() else 0.0

    def conditions(self):
        held = self.world.grasp.holding("bottle")
        grasp = held and self.lifted("bottle", 0.04)
        aimed = held and self.aimed()
        return [grasp, aimed, aimed and self.spraying()]


# ---------------------------------------------------------------------------------------- put three obj
class PutThreeObj(Task):
    name = "put_three_obj"
    subtasks = ("open_drawer", "place_fruit_1", "place_fruit_2", "place_fruit_3", "close_drawer")
    episode_seconds = 120.0
    fruits = ("fruit1", "fruit2", "fruit3")  # apple, banana, orange
    open_at = 0.15  # drawer opening [m] counted as open (range 0..0.22)
    closed_at = 0.03

    def randomize(self, rng):
        self.set_static_pos("cabinet", [0.63 + rng.uniform(-0.02, 0.02), rng.uniform(-0.04, 0.04), 0.0])
        w = self.world
        w.data.qpos[w.model.joint("drawer_slide").qposadr[0]] = 0.0
        self.set_free_pose("fruit1", [rng.uniform(0.44, 0.50), rng.uniform(0.34, 0.39), 0.031])
        self.set_free_pose("fruit2", [rng.uniform(0.36, 0.42), rng.uniform(-0.36, -0.31), 0.02],
                           yaw=rng.uniform(-0.3, 0.3))
        self.set_free_pose("fruit3", [rng.uniform(0.32, 0.37), rng.uniform(0.26, 0.31), 0.030])

    def opening(self) -> float:
        w = self.world
        return float(w.data.qpos[w.model.joint("drawer_slide").qposadr[0]])

    def in_drawer(self, body: str) -> bool:
        w = self.world
        d, m = w.data, w.model
        did = m.body("drawer").id
        p = d.xmat[did].reshape(3, 3).T @ (d.xpos[m.body(body).id] - d.xpos[did])
        inside = (0.0 < p[0] < 0.235) and (abs(p[1]) < 0.205) and (0.0 < p[2] < 0.09)
        return bool(inside and not w.grasp.holding(body))

    def n_in_drawer(self) -> int:
        return sum(self.in_drawer(f) for f in self.fruits)

    def conditions(self):
        n = self.n_in_drawer()
        return [self.opening() > self.open_at, n >= 1, n >= 2, n >= 3,
                n >= 3 and self.opening() < self.closed_at and not self.world.grasp.holding("drawer")]


# ------------------------------------------------------------------------------------------- wipe board
class WipeBoard(Task):
    name = "wipe_board"
    subtasks = ("grasp_cloth", "wipe_marked_region", "remove_ink")
    cameras = ("camera_front", "camera_side")
    episode_seconds = 40.0
    wipe_distance = 0.30  # cloth travel in contact with the board over the marked region [m]
    clean_fraction = 0.8  # share of ink marks removed for "remove the majority of visible ink"
    board_xy = np.array([0.5, 0.05])

    def __init__(self, world, variant):
        super().__init__(world, variant)
        self.ink: np.ndarray | None = None
        self.cleared: np.ndarray | None = None
        self.wiped = 0.0
        self._last_cloth_xy: np.ndarray | None = None

    def scene_kwargs(self, rng):
        self.ink = ink_layout(rng, self.board_xy)
        return {"ink_positions": self.ink}

    def randomize(self, rng):
        self.set_free_pose("cloth", [rng.uniform(0.30, 0.42), rng.uniform(-0.38, -0.30), 0.0085],
                           yaw=rng.uniform(-0.4, 0.4))
        self.ink = ink_layout(rng, self.board_xy)
        m = self.world.model
        for i, (x, y, a) in enumerate(self.ink):
            gid = m.geom(f"ink{i}").id
            m.geom_pos[gid, :2] = (x, y)
            m.geom_quat[gid] = _yaw_quat(a)
        self.reset_ink()

    def reset_ink(self):
        m = self.world.model
        self.cleared = np.zeros(len(self.ink), dtype=bool)
        self._ink_ids = np.array([m.geom(f"ink{i}").id for i in range(len(self.ink))])
        self._ink_rgba = m.geom_rgba[self._ink_ids].copy()
        m.geom_rgba[self._ink_ids, 3] = 1.0
        self.wiped = 0.0
        self._last_cloth_xy = None

    def cloth_on_board(self) -> bool:
        w = self.world
        d, m = w.data, w.model
        cg, bg = m.geom("cloth_geom").id, m.geom("board_surface").id
        for i in range(d.ncon):
            c = d.contact[i]
            if {c.geom1, c.geom2} == {cg, bg}:
                return True
        return False

    def region(self) -> tuple[np.ndarray, np.ndarray]:
        return self.ink[:, :2].min(axis=0) - 0.02, self.ink[:, :2].max(axis=0) + 0.02

    def update(self):
        w = self.world
        d, m = w.data, w.model
        cid = m.body("cloth").id
        xy = d.xpos[cid][:2].copy()
        if self.cloth_on_board():
            rot = d.xmat[cid].reshape(3, 3)
            local = (self.ink[:, :2] - xy) @ rot[:2, :2]
            under = (np.abs(local[:, 0]) < 0.055) & (np.abs(local[:, 1]) < 0.055)
            new = under & ~self.cleared
            if new.any():
                self.cleared |= under
                m.geom_rgba[self._ink_ids[new], 3] = 0.0
            lo, hi = self.region()
            if self._last_cloth_xy is not None and np.all(xy > lo) and np.all(xy < hi):
                self.wiped += float(np.linalg.norm(xy - self._last_cloth_xy))
            self._last_cloth_xy = xy
        else:
            self._last_cloth_xy = None

    def clean_share(self) -> float:
        return float(self.cleared.mean())

    def conditions(self):
        held = self.world.grasp.holding("cloth")
        return [held and self.lifted("cloth", 0.035), self.wiped >= self.wipe_distance,
                self.clean_share() >= self.clean_fraction]


TASK_CLASSES = {c.name: c for c in (WaterPlant, PutThreeObj, WipeBoard)}
