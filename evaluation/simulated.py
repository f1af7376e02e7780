"""Seeded rollouts in the simulated task world, through the robot's own runtime core.

    python -m evaluation --task water_plant --variant seen --policy expert --episodes 10 --seed 0
    python -m evaluation --task wipe_board --policy /path/to/checkpoint --episodes 10 --json
    python -m evaluation --task put_three_obj --policy expert --episodes 1 --video out.mp4
    python -m evaluation --task water_plant --policy runs/bc --episodes 20 --seed 1000   # a training.bc_baseline run

The world renders at the frame size the policy declares (a JalaPolicy checkpoint's ``input_image_hw``, the size a
behaviour-cloning baseline's demonstrations were recorded at), else 640x480; --width/--height override it (a
checkpoint then refuses frames of another size than it was trained on).

Every rollout runs the same ``jala_runtime`` pieces the ROS nodes run on the robot: the ``ObservationAssembler``
builds the observation, the ``ChunkScheduler`` (inside a ``PolicyRunner``) decides when the next chunk is due
(every ``execute_steps`` actions, since simulated inference takes no simulated time; ``--latency-s`` plays a
robot's latency instead), and a ``ChunkExecutor`` follows each chunk on the world's arm and hand (the arm gets
the whole chunk, a new one preempts it; the hand follows its waypoint schedule, one target per action step).
Only the clock differs: the world's simulated time on the action grid (k * action_dt; physics is stepped to
within one 2 ms step of it), so rollouts run faster than real time when rendering allows.

Rollouts are deterministic for a seed: the episode seed sets the world, and the flow head's sampling noise is
seeded too (chunk i of the episode with seed s samples with ``sampling_seed + s * SAMPLING_SEEDS_PER_EPISODE +
i``). The same checkpoint on the same seeds gives the same table; ``--sampling-seed`` draws another set of noise
on the same worlds (the spread it shows is the policy's, not the world's).
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time
from dataclasses import asdict, dataclass, field

import numpy as np

from embodiment import ACTION_DT, ACTION_HORIZON
from hardware.sim.world import SimWorld, SimWorldConfig
from jala_runtime.executor import ChunkExecutor, FollowerConfig
from jala_runtime.loop import PolicyRunner
from jala_runtime.observation import ObservationAssembler
from jala_runtime.scheduler import ChunkScheduler, execute_steps_for

from .policies import PolicySpecError, load_policy, policy_input_hw

DEFAULT_HW = (480, 640)  # (H, W) rendered for a policy that declares no frame size
SAMPLING_SEEDS_PER_EPISODE = 100_000  # chunk sampling seeds of one episode never reach the next episode's

NO_IMAGE = np.zeros((0, 0, 3), np.uint8)


@dataclass
class EpisodeResult:
    seed: int
    completion_ratio: float
    subtasks: dict[str, bool]
    sim_seconds: float
    wall_seconds: float
    chunks: int
    stopped: str = ""  # "" | "success" | "timeout" | "safety: ..." | "policy done"


def run_episode(world: SimWorld, policy, seed: int, execute_steps: int | None = None,
                max_seconds: float | None = None, frames: list | None = None,
                video_camera: str | None = None, sampling_seed: int = 0, latency_s: float = 0.0) -> EpisodeResult:
    """One rollout; returns its Completion Ratio. ``policy``: an ``ExpertPolicy`` / ``BCPolicy`` /
    ``CheckpointPolicy`` (anything with ``predict(...) -> TimedChunk``). ``frames`` (a list) collects RGB frames
    for a video. The policy samples chunk i with seed ``sampling_seed + seed * SAMPLING_SEEDS_PER_EPISODE + i``.
    ``execute_steps`` None: the checkpoint's ``inference.execute_steps``, else ``embodiment.EXECUTE_STEPS``.

    ``latency_s`` > 0 plays a robot's inference latency: a chunk reaches the devices that long after the
    observation it was computed from (rounded up to the action grid) while the world goes on, and the next one is
    computed only after it went out (one inference at a time, as in the policy node)."""
    world.reset(seed)
    if hasattr(policy, "reset"):
        policy.reset()
    dt = float(getattr(policy, "action_dt", ACTION_DT))
    limit = world.episode_seconds if max_seconds is None else max_seconds
    cams = list(world.cameras)
    cam = video_camera or cams[0]
    uses_images = bool(getattr(policy, "uses_images", True))
    observations = ObservationAssembler(len(cams), max_age_s=dt)
    runner = PolicyRunner(policy, ChunkScheduler(dt, execute_steps_for(policy, execute_steps),
                                                 int(getattr(policy, "horizon", 16))),
                          observations, seed=sampling_seed + seed * SAMPLING_SEEDS_PER_EPISODE)
    clock = [world.sim_time]
    # the nodes' defaults, except the stall guard: a stepped world has no threads that could stall
    executor = ChunkExecutor(world.arm, world.hand, FollowerConfig(min_lead_s=0.06, stall_hold_s=math.inf),
                             FollowerConfig(stall_hold_s=math.inf), clock=lambda: clock[0])
    t0 = world.sim_time
    steps_done = 0
    wall0 = time.perf_counter()
    stopped = "timeout"
    in_flight = None  # (when it goes out, chunk): computed, not yet at the devices (one at a time)
    for k in range(int(math.ceil((limit - t0) / dt))):
        now = t0 + k * dt
        clock[0] = now
        if in_flight is not None and in_flight[0] <= now + 1e-9:
            _, chunk = in_flight
            in_flight = None
            executor.submit(chunk, now)
            runner.chunk_out(chunk, now)
        if in_flight is None and runner.scheduler.due(now):
            if world.completion().success:
                stopped = "success"
                break
            if getattr(policy, "done", False):
                stopped = "policy done"
                break
            # a policy that does not look (the scripted expert) gets empty frames: rendering is most of the cost
            images = world.images() if uses_images else [NO_IMAGE] * len(cams)
            for i, image in enumerate(images):
                observations.set_frame(i, now, image)
            proprio = world.proprio()
            observations.set_arm(proprio[:7], now)
            observations.set_hand(proprio[7:], now)
            chunk, why = runner.poll(now, world.instruction)
            if chunk is not None and latency_s > 0:
                in_flight = (now + latency_s, chunk)
            elif chunk is not None:
                executor.submit(chunk, now)
                runner.chunk_out(chunk, now)
        executor.tick(now)
        if executor.fault:
            stopped = f"safety: {executor.fault}"
            break
        target_steps = int(round((k + 1) * dt / world.model.opt.timestep))
        world.step(target_steps - steps_done)
        steps_done = target_steps
        if frames is not None and k % 2 == 0:
            frames.append(world.cameras[cam].read().color)
    if stopped == "timeout" and world.completion().success:
        stopped = "success"
    c = world.completion()
    return EpisodeResult(seed=seed, completion_ratio=c.ratio, subtasks=dict(zip(c.subtasks, c.done)),
                         sim_seconds=world.sim_time, wall_seconds=time.perf_counter() - wall0,
                         chunks=runner.chunks_out, stopped=stopped)


@dataclass
class Summary:
    task: str
    variant: str
    policy: str
    episodes: list[EpisodeResult] = field(default_factory=list)
    sampling_seed: int = 0
    latency_s: float = 0.0
    execute_steps: int = 0  # actions of each chunk executed before the next took over

    @property
    def mean_completion_ratio(self) -> float:
        return float(np.mean([e.completion_ratio for e in self.episodes])) if self.episodes else 0.0

    def to_json(self) -> dict:
        return {"task": self.task, "variant": self.variant, "policy": self.policy,
                "sampling_seed": self.sampling_seed, "latency_s": self.latency_s,
                "execute_steps": self.execute_steps, "mean_completion_ratio": self.mean_completion_ratio,
                "episodes": [asdict(e) for e in self.episodes]}


def render_size(policy_spec: str, width: int | None = None, height: int | None = None) -> tuple[int, int]:
    """(width, height) to render at: what the caller gave, else the policy's declared frame size, else 640x480."""
    if width is None and height is None:
        hw = policy_input_hw(policy_spec) or DEFAULT_HW
        return int(hw[1]), int(hw[0])
    return int(width or DEFAULT_HW[1]), int(height or DEFAULT_HW[0])


def evaluate(task: str, variant: str, policy_spec: str, episodes: int, seed: int, *, width: int | None = None,
             height: int | None = None, execute_steps: int | None = None, video: str | None = None,
             progress: bool = True, device: str | None = None, max_seconds: float | None = None,
             sampling_seed: int = 0, latency_s: float = 0.0) -> Summary:
    """``episodes`` rollouts with seeds ``seed``, ``seed + 1``, ... (``width``/``height`` None: ``render_size``);
    ``sampling_seed`` picks the policy's sampling noise (see the module's doc); ``latency_s``: see run_episode."""
    width, height = render_size(policy_spec, width, height)
    world = SimWorld(SimWorldConfig(task=task, variant=variant, seed=seed, render_width=width, render_height=height))
    try:
        policy = load_policy(policy_spec, world, device=device)
        summary = Summary(task, variant, policy_spec, sampling_seed=sampling_seed, latency_s=latency_s,
                          execute_steps=execute_steps_for(policy, execute_steps))
        frames: list | None = [] if video else None
        seeds = [seed + i for i in range(episodes)]
        bar = None
        if progress:
            from tqdm import tqdm
            bar = tqdm(seeds, desc=f"{task}/{variant}", unit="ep", file=sys.stderr)
        for s in (bar if bar is not None else seeds):
            res = run_episode(world, policy, s, execute_steps=execute_steps, frames=frames, max_seconds=max_seconds,
                              sampling_seed=sampling_seed, latency_s=latency_s)
            summary.episodes.append(res)
            if bar is not None:
                bar.set_postfix(cr=f"{summary.mean_completion_ratio:.2f}")
        if video and frames:
            import imageio.v2 as imageio
            fps = 1.0 / ACTION_DT / 2  # every second action step
            imageio.mimwrite(video, frames, fps=fps, codec="libx264", quality=7, macro_block_size=8)
        return summary
    finally:
        world.close()


def execute_steps_arg(text: str) -> int:
    """argparse type of --execute-steps (here and in evaluation.table): a whole number 1..ACTION_HORIZON."""
    try:
        n = int(text)
    except ValueError:
        n = 0
    if not 1 <= n <= ACTION_HORIZON:
        raise argparse.ArgumentTypeError(f"must be 1..{ACTION_HORIZON} (the actions of one chunk), got {text!r}")
    return n


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--task", required=True, choices=["water_plant", "put_three_obj", "wipe_board"])
    ap.add_argument("--variant", default="seen", choices=["seen", "unseen"])
    ap.add_argument("--policy", default="expert",
                    help="'expert', a JalaPolicy checkpoint directory or a training.bc_baseline directory")
    ap.add_argument("--episodes", type=int, default=10)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--width", type=int, default=None,
                    help="render width (default: the policy's frame size, else 640)")
    ap.add_argument("--height", type=int, default=None,
                    help="render height (default: the policy's frame size, else 480)")
    ap.add_argument("--execute-steps", type=execute_steps_arg, default=None,
                    help="actions executed per chunk before re-planning (default: the checkpoint's "
                         "inference.execute_steps, else 8)")
    ap.add_argument("--max-seconds", type=float, default=None, help="episode limit in sim seconds (task default)")
    ap.add_argument("--sampling-seed", type=int, default=0,
                    help="another set of the policy's sampling noise on the same worlds (default 0)")
    ap.add_argument("--latency-s", type=float, default=0.0,
                    help="inference latency to play: chunks reach the devices this long after their observation "
                         "while the world goes on (default 0: the world waits for the policy)")
    ap.add_argument("--device", default=None, help="torch device for a checkpoint (default: cuda if available)")
    ap.add_argument("--json", action="store_true", help="print one JSON document instead of text")
    ap.add_argument("--video", default=None, help="save an mp4 of all rollouts (first camera)")
    ap.add_argument("--no-progress", action="store_true")
    args = ap.parse_args(argv)
    try:
        summary = evaluate(args.task, args.variant, args.policy, args.episodes, args.seed, width=args.width,
                           height=args.height, execute_steps=args.execute_steps, video=args.video,
                           progress=not args.no_progress, device=args.device, max_seconds=args.max_seconds,
                           sampling_seed=args.sampling_seed, latency_s=args.latency_s)
    except PolicySpecError as exc:
        ap.error(str(exc))
    if args.json:
        print(json.dumps(summary.to_json(), indent=2))
    else:
        for e in summary.episodes:
            done = " ".join(f"{k}={'Y' if v else 'n'}" for k, v in e.subtasks.items())
            print(f"seed {e.seed:4d}  CR {e.completion_ratio:.3f}  [{done}]  sim {e.sim_seconds:5.1f}s  "
                  f"wall {e.wall_seconds:5.1f}s  {e.stopped}")
        print(f"{args.task}/{args.variant} policy={args.policy}: mean Completion Ratio "
              f"{summary.mean_completion_ratio:.3f} over {len(summary.episodes)} episodes "
              f"(execute_steps {summary.execute_steps})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
