"""SimWorldConfig: the settings of one simulated task world (task, variant, seed, rendering, physics pacing)."""
from __future__ import annotations

from dataclasses import dataclass

from .scene import TASKS, VARIANTS


@dataclass
class SimWorldConfig:
    task: str = "water_plant"
    variant: str = "seen"  # "seen" or "unseen"
    seed: int = 0
    render_width: int = 640
    render_height: int = 480
    camera_fps: float = 30.0
    timestep: float = 0.002  # physics step [s]
    realtime_factor: float = 1.0  # sim seconds per wall second in start_realtime()
    hand_full_travel_s: float = 0.8  # time for a hand DoF to travel 0..1000 (Inspire RH56: ~0.8-1 s)
    grasp_assist: bool = True  # weld a grasped object to the palm (see GraspAssist)
    render_depth: bool = False  # also render depth (metres) into CameraFrame.depth
    task_tick_steps: int = 5  # physics steps per control tick: servo setpoints, detectors, ink and grasp logic
    arm_velocity_margin: float = 1.0  # chunk joint speeds may reach this share of the FR3 velocity limits
    # start_realtime(): when physics falls further behind the wall clock than this (a starved CPU), the simulated
    # clock slips instead of fast-forwarding, so a chunk never plays out in a burst that holds cannot interrupt
    max_realtime_lag_s: float = 0.05
    # start_realtime() sets the interpreter's GIL switch interval (sys.setswitchinterval) to this until stop(); 0
    # leaves it alone. The default 5 ms lets busy Python threads (an rclpy executor, state publishers) keep the
    # physics thread off the GIL for 5 ms after every MuJoCo call, and physics then falls behind the wall clock
    realtime_switch_interval_s: float = 0.001

    def __post_init__(self):
        if self.task not in TASKS:
            raise ValueError(f"unknown task {self.task!r}; choose one of {TASKS}")
        if self.variant not in VARIANTS:
            raise ValueError(f"unknown variant {self.variant!r}; choose one of {VARIANTS}")
        if self.render_width < 16 or self.render_height < 16:
            raise ValueError("render size must be at least 16x16")
        if self.camera_fps <= 0 or self.timestep <= 0 or self.realtime_factor <= 0:
            raise ValueError("camera_fps, timestep and realtime_factor must be positive")
        if not self.realtime_switch_interval_s >= 0:
            raise ValueError(f"realtime_switch_interval_s must be >= 0, got {self.realtime_switch_interval_s}")
        if not self.max_realtime_lag_s >= self.timestep:
            raise ValueError(f"max_realtime_lag_s must be at least one timestep ({self.timestep} s), "
                             f"got {self.max_realtime_lag_s}")

