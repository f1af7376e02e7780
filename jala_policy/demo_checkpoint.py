"""A tiny random JALA policy checkpoint for demos and runtime tests.

    python -m jala_policy.demo_checkpoint --out /tmp/jala_demo_ckpt             # centred on the FR3 ready pose
    python -m jala_policy.demo_checkpoint --out /tmp/ckpt --views 2 --centre 0,-0.5,0,-2.2,0,1.6,0.8

The weights are random (``tiny`` preset), so the actions mean nothing; the action normalisation statistics are
centred on an arm pose (default the FR3 ready pose ``embodiment.READY_Q``, where the simulated world starts) with a small range
and on a half-open hand, so whatever the head samples maps to small motions around that pose.

Why the default arm range is only +-0.01 rad: a random head's outputs are (close to) independent per action
step and reach about +-3 in normalised units, so consecutive targets of a chunk can differ by 6 * arm_range.
At 15 Hz that is 0.9 rad/s for 0.01 rad, but 13 rad/s for 0.15 rad, far above the FR3 joint speed limits
(2.62 rad/s for joints 1-4) that the arm's safety gate enforces: such chunks would be refused. The hand is
rate-limited by the device itself, so its range (+-100 of 0..1000) is wider.

``home`` and ``sim_ready`` (older names) mean the same ready pose.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from embodiment import ARM_DOF, HAND_DOF, HAND_RANGE, READY_Q

from .normalization import NormalizationStats

HAND_HALF_OPEN = sum(HAND_RANGE) / 2
READY_NAMES = ("ready", "home", "sim_ready")


def demo_action_stats(arm_range: float = 0.01, hand_range: float = 100.0,
                      home=READY_Q, hand_centre: float = HAND_HALF_OPEN) -> NormalizationStats:
    """Action statistics: home +- ``arm_range`` rad for the arm, ``hand_centre`` +- ``hand_range`` for the hand."""
    if arm_range <= 0 or hand_range <= 0:
        raise ValueError("ranges must be positive")
    centre = np.concatenate([np.asarray(home, dtype=np.float64), np.full(HAND_DOF, float(hand_centre))])
    half = np.concatenate([np.full(ARM_DOF, float(arm_range)), np.full(HAND_DOF, float(hand_range))])
    lo, hi = centre - half, centre + half
    if lo[ARM_DOF:].min() < HAND_RANGE[0] or hi[ARM_DOF:].max() > HAND_RANGE[1]:
        raise ValueError(f"hand statistics must stay inside {HAND_RANGE[0]:.0f}..{HAND_RANGE[1]:.0f}")
    return NormalizationStats(lo, hi, centre, half / np.sqrt(3.0))


def resolve_centre(centre: str | np.ndarray | None) -> np.ndarray:
    """``ready`` (the FR3 ready pose; ``home`` / ``sim_ready`` are the same) or 7 comma-separated rad."""
    if centre is None or (isinstance(centre, str) and centre in READY_NAMES):
        return np.asarray(READY_Q, dtype=np.float64)
    q = np.array([float(v) for v in centre.split(",")] if isinstance(centre, str) else centre, dtype=np.float64)
    if q.shape != (ARM_DOF,) or not np.all(np.isfinite(q)):
        raise ValueError(f"centre must be 'ready' or {ARM_DOF} finite joint angles, got {centre!r}")
    return q


def write_demo_checkpoint(out: str | Path, *, seed: int = 0, num_views: int = 1, arm_range: float = 0.01,
                          hand_range: float = 100.0, centre: str | np.ndarray | None = "ready") -> Path:
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
    ap.add_argument("--centre", default="ready", help="arm pose the actions centre on: ready | 7 comma-separated angles (rad)")
    ap.add_argument("--hand-range", type=float, default=100.0, help="half range of the hand statistics (0..1000)")
    args = ap.parse_args(argv)
    path = write_demo_checkpoint(args.out, seed=args.seed, num_views=args.views, arm_range=args.arm_range,
                                 hand_range=args.hand_range, centre=args.centre)
    print(f"wrote demo checkpoint ({args.views} view(s), centred on {args.centre}) to {path}")


if __name__ == "__main__":
    main()
