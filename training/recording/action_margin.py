"""How close recorded demonstrations come to the FR3 safety gate's refusal lines.

    python -m training.recording.action_margin datasets/water_plant datasets/wipe_board

A policy imitates the recorded ``action`` (the operator's clean command) with some error; where the
demonstrations already move at the gate's ``max_step`` between 15 Hz waypoints, or run along the joint limits
less its ``position_margin``, the policy's chunks cross those lines and the gate refuses them (a safety stop).
For each dataset this prints, over the 7 arm joints of the recorded actions:

- the largest step between consecutive actions of an episode (per joint and overall) against ``max_step``, and
  the share of steps above ``--near`` x ``max_step``;
- the smallest distance of any action to the gate's joint limits (datasheet limit less the margin).

Steps are taken between consecutive recorded frames, so a dataset recorded at another rate than the policy's
15 Hz is compared at its own rate (the printed rate says which).
"""
from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from embodiment import ARM_DOF
from hardware.franka.safety import ArmSafetyLimits


@dataclass
class ActionMargin:
    """Step and joint-limit margins of one dataset's recorded arm actions."""

    fps: float
    frames: int
    max_step: np.ndarray  # (7,) largest |a[t+1] - a[t]| within an episode, rad
    p99_step: float  # 99th percentile over steps of the largest joint's |a[t+1] - a[t]|, rad
    near_steps: int  # steps where some joint moves more than near x the gate's max_step
    limit_clearance: np.ndarray  # (7,) smallest distance to the gate's joint limits, rad (negative: beyond)


def limit_clearance(arm_actions, limits: ArmSafetyLimits | None = None) -> np.ndarray:
    """(7,) the smallest distance of (N, 7) arm actions to the gate's joint limits (datasheet limit less its
    margin) per joint, rad; negative where an action is beyond."""
    limits = limits or ArmSafetyLimits()
    a = np.asarray(arm_actions, dtype=float).reshape(-1, ARM_DOF)
    return np.minimum(a - limits.q_lower, limits.q_upper - a).min(axis=0)


def episode_clearances(ds, limits: ArmSafetyLimits | None = None) -> np.ndarray:
    """(num_episodes,) each episode's smallest limit_clearance over its arm actions and joints (a LeRobot v3.0
    dataset, ``LeRobotV3Dataset``)."""
    return np.array([limit_clearance(np.asarray(ds.episode_data(e)["action"], dtype=float)[:, :ARM_DOF],
                                     limits).min() for e in range(ds.num_episodes)])


def action_margin(root: str | Path, limits: ArmSafetyLimits | None = None, near: float = 0.9) -> ActionMargin:
    from .lerobot_v3 import LeRobotV3Dataset

    limits = limits or ArmSafetyLimits()
    ds = LeRobotV3Dataset(root)
    steps = []
    actions = []
    for e in range(ds.num_episodes):
        a = np.asarray(ds.episode_data(e)["action"], dtype=float)[:, :ARM_DOF]
        actions.append(a)
        if len(a) > 1:
            steps.append(np.abs(np.diff(a, axis=0)))
    if not actions:
        raise ValueError(f"{root}: the dataset has no episodes")
    a = np.concatenate(actions)
    s = np.concatenate(steps) if steps else np.zeros((0, ARM_DOF))
    largest = s.max(axis=1)  # per step: the joint that moved most
    return ActionMargin(
        fps=float(ds.fps), frames=len(a),
        max_step=s.max(axis=0) if len(s) else np.zeros(ARM_DOF),
        p99_step=float(np.percentile(largest, 99)) if len(s) else 0.0,
        near_steps=int(np.sum(largest > near * limits.max_step)),
        limit_clearance=limit_clearance(a, limits))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("datasets", nargs="+", help="LeRobot v3.0 dataset folders")
    ap.add_argument("--near", type=float, default=0.9, help="count steps above this fraction of max_step")
    args = ap.parse_args(argv)
    limits = ArmSafetyLimits()
    for root in args.datasets:
        if not (Path(root) / "meta" / "info.json").is_file():
            ap.error(f"{root} is not a LeRobot v3.0 dataset (no meta/info.json)")
        m = action_margin(root, limits, args.near)
        joints = " ".join(f"{v:.3f}" for v in m.max_step)
        clear = " ".join(f"{v:.3f}" for v in m.limit_clearance)
        print(f"{root}: {m.frames} frames at {m.fps:g} fps")
        print(f"  largest step per joint (rad): {joints}  max {m.max_step.max():.3f} "
              f"(gate max_step {limits.max_step:.3f}); p99 {m.p99_step:.3f}; {m.near_steps} step(s) above "
              f"{args.near:g} x max_step")
        print(f"  clearance to the gate's joint limits per joint (rad): {clear}  min {m.limit_clearance.min():.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
