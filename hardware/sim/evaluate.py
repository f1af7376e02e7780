"""Seeded rollouts in the simulated task world with the scripted expert or a JalaPolicy checkpoint.

    python -m hardware.sim.evaluate --task water_plant --variant seen --policy expert --episodes 10 --seed 0
    python -m hardware.sim.evaluate --task wipe_board --policy /path/to/checkpoint --episodes 10 --json
    python -m hardware.sim.evaluate --task put_three_obj --policy expert --episodes 1 --video out.mp4

Both policies run through the same chunk loop: every ``execute_steps`` actions (15 Hz) the policy is asked for
a chunk of 16 joint targets (7 FR3 + 6 Inspire), the arm gets the whole chunk as a timed trajectory (a new
chunk preempts the old one) and the hand gets one target per action step. Physics is stepped manually, so
rollouts are deterministic for a seed and run faster than real time when rendering allows.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from hardware.interfaces import ARM_DOF, JointTrajectoryChunk, SafetyViolation

from .expert import ScriptedExpert, make_expert
from .world import SimWorld, SimWorldConfig

ACTION_DT = 1.0 / 15.0


@dataclass
class EpisodeResult:
    seed: int
    completion_ratio: float
    subtasks: dict[str, bool]
    sim_seconds: float
    wall_seconds: float
    chunks: int
    stopped: str = ""  # "" | "success" | "timeout" | "safety: ..." | "policy done"


class CheckpointPolicy:
    """Adapter: JalaPolicy.predict(images, instruction, proprio) -> (16, 13) targets for the chunk loop.

    A checkpoint whose number of views differs from the world's cameras is refused (jala_policy's
    check_camera_views, the same check and message as the ROS policy node), never fed a subset of the views."""

    def __init__(self, directory: str | Path, world: SimWorld, device: str | None = None):
        from jala_policy.policy import JalaPolicy, check_camera_views  # heavy import only when a checkpoint is used

        self.policy = JalaPolicy.from_pretrained(directory, device=device)
        check_camera_views(self.policy.config.num_views, list(world.cameras))

    def reset(self):
        self.last_times = None

    def act(self, world: SimWorld) -> np.ndarray:
        images = world.images()
        stamp = world.sim_time
        chunk = self.policy.predict(images if len(images) > 1 else images[0], world.instruction, world.proprio(),
                                    timestamp=stamp)
        self.last_times = np.asarray(chunk.timestamps, dtype=np.float64) - stamp  # chunk times after the obs
        return np.asarray(chunk.actions, dtype=np.float64)


def run_episode(world: SimWorld, policy, seed: int, execute_steps: int = 8, max_seconds: float | None = None,
                frames: list | None = None, video_camera: str | None = None) -> EpisodeResult:
    """One rollout; returns its Completion Ratio. ``frames`` (a list) collects RGB frames for a video."""
    world.reset(seed)
    if hasattr(policy, "reset"):
        policy.reset()
    limit = world.episode_seconds if max_seconds is None else max_seconds
    steps_per_action = max(1, int(round(ACTION_DT / world.model.opt.timestep)))
    cam = video_camera or next(iter(world.cameras))
    wall0 = time.perf_counter()
    chunks = 0
    stopped = "timeout"
    while world.sim_time < limit:
        actions = policy.act(world)
        chunks += 1
        actions = np.asarray(actions, dtype=np.float64)
        times = getattr(policy, "last_times", None)
        if times is None or len(times) != len(actions):
            times = ACTION_DT * np.arange(1, len(actions) + 1)
        try:
            world.arm.execute(JointTrajectoryChunk(times=times, positions=actions[:, :ARM_DOF]))
        except (SafetyViolation, ValueError) as exc:
            world.arm.hold()
            world.hand.hold()
            stopped = f"safety: {exc}"
            break
        n = min(execute_steps, len(actions))
        safety = None
        for k in range(n):
            try:
                world.hand.set_angles(actions[k, ARM_DOF:])
            except SafetyViolation as exc:
                safety = exc
                world.hand.hold()
            world.step(steps_per_action)
            if frames is not None and k % 2 == 0:
                frames.append(world.cameras[cam].read().color)
        if safety is not None:
            world.arm.hold()
            stopped = f"safety: {safety}"
            break
        if world.completion().success:
            stopped = "success"
            break
        if isinstance(policy, ScriptedExpert) and policy.done:
            stopped = "policy done"
            break
    c = world.completion()
    return EpisodeResult(seed=seed, completion_ratio=c.ratio, subtasks=dict(zip(c.subtasks, c.done)),
                         sim_seconds=world.sim_time, wall_seconds=time.perf_counter() - wall0, chunks=chunks,
                         stopped=stopped)


@dataclass
class Summary:
    task: str
    variant: str
    policy: str
    episodes: list[EpisodeResult] = field(default_factory=list)

    @property
    def mean_completion_ratio(self) -> float:
        return float(np.mean([e.completion_ratio for e in self.episodes])) if self.episodes else 0.0

    def to_json(self) -> dict:
        return {"task": self.task, "variant": self.variant, "policy": self.policy,
                "mean_completion_ratio": self.mean_completion_ratio,
                "episodes": [asdict(e) for e in self.episodes]}


def evaluate(task: str, variant: str, policy_spec: str, episodes: int, seed: int, *, width: int = 640,
             height: int = 480, execute_steps: int = 8, video: str | None = None, progress: bool = True,
             device: str | None = None, max_seconds: float | None = None) -> Summary:
    world = SimWorld(SimWorldConfig(task=task, variant=variant, seed=seed, render_width=width, render_height=height))
    try:
        policy = make_expert(world) if policy_spec == "expert" else CheckpointPolicy(policy_spec, world, device=device)
        summary = Summary(task, variant, policy_spec)
        frames: list | None = [] if video else None
        seeds = [seed + i for i in range(episodes)]
        bar = None
        if progress:
            from tqdm import tqdm
            bar = tqdm(seeds, desc=f"{task}/{variant}", unit="ep", file=sys.stderr)
        for s in (bar if bar is not None else seeds):
            res = run_episode(world, policy, s, execute_steps=execute_steps, frames=frames, max_seconds=max_seconds)
            summary.episodes.append(res)
            if bar is not None:
                bar.set_postfix(cr=f"{summary.mean_completion_ratio:.2f}")
        if video and frames:
            import imageio.v2 as imageio
            fps = 15.0 / 2
            imageio.mimwrite(video, frames, fps=fps, codec="libx264", quality=7, macro_block_size=8)
        return summary
    finally:
        world.close()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--task", required=True, choices=["water_plant", "put_three_obj", "wipe_board"])
    ap.add_argument("--variant", default="seen", choices=["seen", "unseen"])
    ap.add_argument("--policy", default="expert", help="'expert' or a JalaPolicy checkpoint directory")
    ap.add_argument("--episodes", type=int, default=10)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--width", type=int, default=640)
    ap.add_argument("--height", type=int, default=480)
    ap.add_argument("--execute-steps", type=int, default=8, help="actions executed per chunk before re-planning")
    ap.add_argument("--max-seconds", type=float, default=None, help="episode limit in sim seconds (task default)")
    ap.add_argument("--device", default=None, help="torch device for a checkpoint (default: cuda if available)")
    ap.add_argument("--json", action="store_true", help="print one JSON document instead of text")
    ap.add_argument("--video", default=None, help="save an mp4 of all rollouts (first camera)")
    ap.add_argument("--no-progress", action="store_true")
    args = ap.parse_args(argv)
    if args.policy != "expert" and not Path(args.policy).is_dir():
        ap.error(f"--policy must be 'expert' or an existing checkpoint directory, got {args.policy!r}")
    summary = evaluate(args.task, args.variant, args.policy, args.episodes, args.seed, width=args.width,
                       height=args.height, execute_steps=args.execute_steps, video=args.video,
                       progress=not args.no_progress, device=args.device, max_seconds=args.max_seconds)
    if args.json:
        print(json.dumps(summary.to_json(), indent=2))
    else:
        for e in summary.episodes:
            done = " ".join(f"{k}={'Y' if v else 'n'}" for k, v in e.subtasks.items())
            print(f"seed {e.seed:4d}  CR {e.completion_ratio:.3f}  [{done}]  sim {e.sim_seconds:5.1f}s  "
                  f"wall {e.wall_seconds:5.1f}s  {e.stopped}")
        print(f"{args.task}/{args.variant} policy={args.policy}: mean Completion Ratio "
              f"{summary.mean_completion_ratio:.3f} over {len(summary.episodes)} episodes")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
