"""Collect demonstrations into a LeRobot v3.0 dataset.

    python -m training.recording.record --task water_plant --episodes 50 --root datasets/water_plant
    python -m training.recording.record --task wipe_board --episodes 50 --root datasets/wipe_board --dart-noise 0.02

The simulated world's scripted expert is the operator. Its commands go through the teleop session (the same
``TimedChunk`` commands, deadman and step limits as a human operator's) and the runtime core's chunk executor
(the same refusal rules and safety gate as the robot), and the recorder samples the newest camera frames, joint
states and the operator's clean command at ``--fps``. Physics is stepped here (no ROS, no real-time pacing), so
collection runs faster than real time. Only successful episodes are kept (a failed one is discarded and the next
seed tried) until ``--episodes`` are saved. An existing dataset at ``--root`` is appended to.

``--dart-noise STD``: smooth noise (rad) added to the executed arm targets while the recorded action stays the
operator's clean command (DART-style data that teaches recovery).

``--min-clearance RAD``: keep a successful demonstration only when every recorded arm action stays at least RAD
from the FR3 safety gate's joint limits (datasheet limit less its margin); a closer one is discarded with a line
saying which joint, and the next seed tried. A policy imitates its demonstrations with some error, so demos that
run along a joint limit teach it chunks the gate refuses (safety stops); ``python -m
training.recording.action_margin DATASET`` shows how close a recorded dataset comes.

On the robot (or the simulated world in real time through the ROS graph), record with
``python launch/run_task.py <task> --record N --dataset DIR`` (see README, "Recording demonstrations").
"""
from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

from embodiment import ACTION_DT


def task_cameras(task: str) -> list[tuple[str, str]]:
    """(camera name, simulated world camera) per camera of ``task``, from the task config the ROS graph uses
    (``jala_bringup/config/<task>.yaml``), so that demonstrations recorded here and through the ROS graph, in the
    simulated world or on the robot, name their image features alike (``observation.images.<camera name>``)."""
    try:
        from jala_bringup.graph import load_task_config
    except ImportError:  # a source checkout without a colcon install: the package lives in ros2_ws/src
        root = Path(__file__).resolve().parents[2] / "ros2_ws" / "src"
        for pkg in ("jala_bringup", "jala_ros"):
            if str(root / pkg) not in sys.path:
                sys.path.insert(0, str(root / pkg))
        from jala_bringup.graph import load_task_config
    return [(c["name"], c.get("sim_camera", "") or "") for c in load_task_config(task)["cameras"]]


def collect_simulated(task: str, episodes: int, root: str | Path, *, variant: str = "seen", seed: int = 0,
                      fps: float | None = None, width: int = 640, height: int = 480, dart_noise: float = 0.0,
                      max_attempts: int | None = None, progress: bool = True, video_codec: str | None = None,
                      min_clearance: float = 0.0):
    """Record ``episodes`` successful expert demonstrations of ``task`` into the dataset at ``root``; returns
    (saved episode indices, attempts, wall seconds). ``min_clearance``: see the module (0 keeps every success)."""
    import numpy as np

    from hardware.sim.world import SimWorld, SimWorldConfig
    from jala_runtime.executor import ChunkExecutor, FollowerConfig
    from teleop.session import TeleopConfig, TeleopSession
    from teleop.sources.expert import ExpertOperator

    from .action_margin import limit_clearance
    from .lerobot_v3 import LeRobotV3Writer, robot_features
    from .recorder import EpisodeRecorder

    if not (math.isfinite(min_clearance) and min_clearance >= 0):
        raise ValueError(f"min_clearance must be a finite number of rad >= 0, got {min_clearance}")
    dt = ACTION_DT if fps is None else 1.0 / float(fps)
    world = SimWorld(SimWorldConfig(task=task, variant=variant, seed=seed, render_width=width,
                                    render_height=height))
    slots = task_cameras(task)
    world_cams = list(world.cameras)
    # camera name -> world camera ('' = the world's cameras in order, as sim_devices assigns them)
    sim_of = {name: (sim or world_cams[i]) for i, (name, sim) in enumerate(slots)}
    cams = list(sim_of)
    root = Path(root)
    if (root / "meta" / "info.json").is_file():
        writer = LeRobotV3Writer.open(root)
    else:
        kwargs = {} if video_codec is None else {"video_codec": video_codec}
        writer = LeRobotV3Writer.create(root, fps=round(1.0 / dt), features=robot_features(
            {c: (height, width) for c in cams}), **kwargs)
    recorder = EpisodeRecorder(writer, cams, episodes_target=episodes)
    saved: list[int] = []
    attempts = 0
    wall0 = time.perf_counter()
    bar = None
    if progress:
        from tqdm import tqdm
        bar = tqdm(total=episodes, desc=f"record {task}", unit="ep", file=sys.stderr)
    try:
        while len(saved) < episodes and (max_attempts is None or attempts < max_attempts):
            ep_seed = seed + attempts
            attempts += 1
            world.reset(ep_seed)
            clock = [world.sim_time]
            session = TeleopSession(ExpertOperator(world), config=TeleopConfig(
                rate_hz=1.0 / dt, dart_noise=dart_noise, seed=ep_seed))
            executor = ChunkExecutor(world.arm, world.hand, FollowerConfig(min_lead_s=0.0, stall_hold_s=math.inf),
                                     FollowerConfig(stall_hold_s=math.inf), clock=lambda: clock[0])
            t0, steps_done, started, outcome = world.sim_time, 0, False, "timeout"
            arm_actions = []  # the recorded clean arm commands (their clearance to the gate's joint limits)
            for k in range(int(math.ceil(world.episode_seconds / dt))):
                now = t0 + k * dt
                clock[0] = now
                proprio = world.proprio()
                cmd = session.step(now, proprio[:7], proprio[7:])
                if cmd.hold:
                    executor.hold(cmd.hold)
                    outcome = f"hold: {cmd.hold}"
                    break
                if cmd.chunk is not None:
                    executor.submit(cmd.chunk, now)
                executor.tick(now)
                if executor.fault:
                    outcome = f"safety: {executor.fault}"
                    break
                if not started:  # the episode begins with the first inputs set after this request
                    ok, why = recorder.start(world.instruction)
                    if not ok:
                        raise RuntimeError(why)
                    started = True
                for cam in cams:
                    recorder.set_image(cam, now, world.cameras[sim_of[cam]].read().color)
                recorder.set_state(proprio)
                if cmd.clean is not None:
                    recorder.set_action(cmd.clean)
                    arm_actions.append(np.asarray(cmd.clean[:7], float))
                recorder.tick(now)
                target = int(round((k + 1) * dt / world.model.opt.timestep))
                world.step(target - steps_done)
                steps_done = target
                if world.completion().success:
                    outcome = "success"
                    break
            clearance = limit_clearance(arm_actions) if arm_actions else np.full(7, np.inf)
            if outcome == "success" and clearance.min() < min_clearance:
                j = int(np.argmin(clearance))
                outcome = f"too close to a joint limit (joint {j + 1}: {clearance[j]:.3f} rad < {min_clearance:g})"
                print(f"seed {ep_seed}: succeeded but discarded, {outcome}", file=sys.stderr)
            if outcome == "success":
                ok, msg = recorder.save()
                if ok:
                    saved.append(writer.num_episodes - 1)
                    if bar is not None:
                        bar.update(1)
                        bar.set_postfix_str(recorder.status().line())
            elif started:
                recorder.discard()
    finally:
        if bar is not None:
            bar.close()
        writer.close()
        world.close()
    return saved, attempts, time.perf_counter() - wall0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--task", required=True, choices=["water_plant", "put_three_obj", "wipe_board"])
    ap.add_argument("--variant", default="seen", choices=["seen", "unseen"])
    ap.add_argument("--episodes", type=int, default=50, help="successful demonstrations to save")
    ap.add_argument("--root", required=True, help="dataset folder (created, or appended to)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--fps", type=float, default=None, help="recording rate (default 1 / action_dt = 15)")
    ap.add_argument("--width", type=int, default=640)
    ap.add_argument("--height", type=int, default=480)
    ap.add_argument("--dart-noise", type=float, default=0.0, help="std (rad) of smooth noise on executed arm targets")
    ap.add_argument("--min-clearance", type=float, default=0.0,
                    help="discard demos whose arm actions come closer than this (rad) to the gate's joint limits")
    ap.add_argument("--max-attempts", type=int, default=None, help="give up after this many episodes (default: none)")
    ap.add_argument("--no-progress", action="store_true")
    args = ap.parse_args(argv)
    if args.episodes < 1:
        ap.error("--episodes must be at least 1")
    if not (math.isfinite(args.min_clearance) and args.min_clearance >= 0):
        ap.error("--min-clearance must be a finite number of rad >= 0")
    saved, attempts, wall = collect_simulated(
        args.task, args.episodes, args.root, variant=args.variant, seed=args.seed, fps=args.fps, width=args.width,
        height=args.height, dart_noise=args.dart_noise, max_attempts=args.max_attempts,
        progress=not args.no_progress, min_clearance=args.min_clearance)
    print(f"{args.task}: saved {len(saved)} episode(s) of {attempts} attempt(s) to {args.root} in {wall:.1f} s")
    return 0 if len(saved) == args.episodes else 1


if __name__ == "__main__":
    raise SystemExit(main())
