"""A tiny random JALA policy checkpoint for demos and runtime tests.

    python -m jala_policy.demo_checkpoint --out /tmp/jala_demo_ckpt                 # centred on the FR3 home pose
    python -m jala_policy.demo_checkpoint --out /tmp/ckpt --centre sim_ready --views 2  # the sim's start pose

The weights are random (``tiny`` preset), so the actions mean nothing; the action normalisation statistics are
centred on an arm pose (default the FR3 home pose q = [0, -pi/4, 0, -3pi/4, 0, pi/2, pi/4]) with a small range
and on a half-open hand, so whatever the head samples maps to small motions around that pose.

Why the default arm range is only +-0.01 rad: a random head's outputs are (close to) independent per action
step and reach about +-3 in normalised units, so consecutive targets of a chunk can differ by 6 * arm_range.
At 15 Hz that is 0.9 rad/s for 0.01 rad, but 13 rad/s for 0.15 rad, far above the FR3 joint speed limits
(2.62 rad/s for joints 1-4) that the arm's safety gate enforces: such chunks would be refused. The hand is
rate-limited by the device itself, so its range (+-100 of 0..1000) is wider.

``--centre sim_ready`` centres on the simulated world's start posture (``hardware.sim.world.READY_Q``), so the
first chunk does not ask for a jump from the start posture to the home pose.
"""
from __future__ import annotations

import argparse
import math
from pathlib import Path

import numpy as np

from .action_chunk import ARM_DOF, HAND_DOF
from .normalization import NormalizationStats

FR3_HOME = np.array([0.0, -math.pi / 4, 0.0, -3 * math.pi / 4, 0.0, math.pi / 2, math.pi / 4])
HAND_HALF_OPEN = 500.0


def demo_action_stats(arm_range: float = 0.01, hand_range: float = 100.0,
                      home: np.ndarray = FR3_HOME, hand_centre: float = HAND_HALF_OPEN) -> NormalizationStats:
    """Action statistics: home +- ``arm_range`` rad for the arm, ``hand_centre`` +- ``hand_range`` for the hand."""
    if arm_range <= 0 or hand_range <= 0:
        raise ValueError("ranges must be positive")
    centre = np.concatenate([np.asarray(home, dtype=np.float64), np.full(HAND_DOF, float(hand_centre))])
    half = np.concatenate([np.full(ARM_DOF, float(arm_range)), np.full(HAND_DOF, float(hand_range))])
    lo, hi = centre - half, centre + half
    if lo[ARM_DOF:].min() < 0 or hi[ARM_DOF:].max() > 1000:
        raise ValueError("hand statistics must stay inside 0..1000")
    return NormalizationStats(lo, hi, centre, half / np.sqrt(3.0))


def resolve_centre(centre: str | np.ndarray | None) -> np.ndarray:
    """``home`` (FR3 home pose), ``sim_ready`` (the simulated world's start posture) or 7 comma-separated rad."""
    if centre is None or (isinstance(centre, str) and centre == "home"):
        return FR3_HOME.copy()
    if isinstance(centre, str) and centre == "sim_ready":
        from hardware.sim.world import READY_Q

        return np.asarray(READY_Q, dtype=np.float64).copy()
    q = np.array([float(v) for v in centre.split(",")] if isinstance(centre, str) else centre, dtype=np.float64)
    if q.shape != (ARM_DOF,) or not np.all(np.isfinite(q)):
        raise ValueError(f"centre must be home, sim_ready or {ARM_DOF} finite joint angles, got {centre!r}")
    return q


def write_demo_checkpoint(out: str | Path, *, seed: int = 0, num_views: int = 1, arm_range: float = 0.01,
                          hand_range: float = 100.0, centre: str | np.ndarray | None = "home") -> Path:
    """Build a tiny random policy with demo statistics, save it to ``out`` and return the path."""
    import torch

    from .config import JalaPolicyConfig
    from .policy import JalaPolicy, default_robot_stats

    torch.manual_seed(seed)
    cfg = JalaPolicyConfig.from_preset("tiny", num_views=num_views)
    policy = JalaPolicy.build(cfg, load_weights=False, device="cpu", dtype=torch.float32)
    policy.set_normalization(default_robot_stats(cfg.action_head.state_dim),
                             demo_action_stats(arm_range, hand_range, home=resolve_centre(centre)))
    out = Path(out)
    policy.save_pretrained(out)
    return out


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True, help="checkpoint directory to write")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--views", type=int, default=1, help="camera views per observation (wipe_board: 2)")
    ap.add_argument("--arm-range", type=float, default=0.01, help="half range of the arm statistics [rad]")
    ap.add_argument("--centre", default="home", help="arm pose the actions centre on: home | sim_ready | 7 angles")
    ap.add_argument("--hand-range", type=float, default=100.0, help="half range of the hand statistics (0..1000)")
    args = ap.parse_args(argv)
    path = write_demo_checkpoint(args.out, seed=args.seed, num_views=args.views, arm_range=args.arm_range,
                                 hand_range=args.hand_range, centre=args.centre)
    print(f"wrote demo checkpoint ({args.views} view(s), centred on {args.centre}) to {path}")


if __name__ == "__main__":
    main()
