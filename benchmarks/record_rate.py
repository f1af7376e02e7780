"""Recording throughput on this CPU: cameras deliver frames at their rate (synthetic 640x480 RGB: shading,
texture and a moving object; one producer thread per camera, like the camera callbacks), the recorder samples at ``--fps`` into a
LeRobot v3.0 dataset (the recorder node's path without DDS), and we measure:

- frames recorded per second vs the requested rate, and frames the recording tick missed (the tick fell behind);
- dropped frames: ticks whose newest camera frame was not newer than the previous tick's (camera behind the rate);
- the MP4 encode / save time per episode (``save_episode``), and the CPU the recording took.

    python -m benchmarks.record_rate                      # 1 and 2 cameras, 640x480, 30 fps, 10 s episodes
    python -m benchmarks.record_rate --fps 15 --seconds 20 --cameras 1
"""
from __future__ import annotations

import argparse
import json
import resource
import tempfile
import threading
import time
from pathlib import Path

import numpy as np


def _camera(recorder, name: str, fps: float, size: tuple[int, int], stop: threading.Event) -> None:
    h, w = size
    # camera-like content: smooth shading, some texture, and an object moving across (random noise would be the
    # encoder's worst case, far from a scene)
    yy, xx = np.mgrid[0:h, 0:w]
    rng = np.random.default_rng(0)
    base = np.stack([(xx * 255 // w), (yy * 255 // h), ((xx + yy) * 127 // (w + h)) + 64], -1).astype(np.int16)
    base = np.clip(base + rng.integers(-6, 7, base.shape), 0, 255).astype(np.uint8)
    period, k, t = 1.0 / fps, 0, time.monotonic()
    while not stop.is_set():
        frame = base.copy()
        x0 = (8 * k) % max(1, w - 80)
        frame[h // 3:h // 3 + 80, x0:x0 + 80] = (200, 40, 40)  # the moving object
        recorder.set_image(name, time.monotonic(), frame)
        k += 1
        t += period
        time.sleep(max(0.0, t - time.monotonic()))


def run(cameras: int, fps: float, seconds: float, size: tuple[int, int], root: Path, codec: str | None,
        camera_fps: float | None = None) -> dict:
    from embodiment import ACTION_DIM
    from training.recording.lerobot_v3 import LeRobotV3Writer, robot_features
    from training.recording.recorder import EpisodeRecorder

    names = [f"cam{i}" for i in range(cameras)]
    kwargs = {} if codec is None else {"video_codec": codec}
    writer = LeRobotV3Writer.create(root, fps=round(fps), features=robot_features({n: size for n in names}),
                                    **kwargs)
    rec = EpisodeRecorder(writer, names)
    stop = threading.Event()
    threads = [threading.Thread(target=_camera, args=(rec, n, camera_fps or fps, size, stop), daemon=True)
               for n in names]
    for t in threads:
        t.start()
    time.sleep(0.3)
    ok, msg = rec.start("benchmark")
    assert ok, msg
    cpu0 = resource.getrusage(resource.RUSAGE_SELF)
    period, ticks, late = 1.0 / fps, 0, 0
    t0 = next_t = time.monotonic()
    tick_ms = []
    while time.monotonic() - t0 < seconds:
        rec.set_state(np.zeros(ACTION_DIM))  # joint states and commands arrive faster than the recording rate
        rec.set_action(np.zeros(ACTION_DIM))
        a = time.perf_counter()
        rec.tick()
        tick_ms.append((time.perf_counter() - a) * 1e3)
        ticks += 1
        next_t += period
        delay = next_t - time.monotonic()
        if delay < 0:
            late += 1
        else:
            time.sleep(delay)
    wall = time.monotonic() - t0
    st = rec.status()
    a = time.perf_counter()
    rec.save()
    save_s = time.perf_counter() - a
    cpu1 = resource.getrusage(resource.RUSAGE_SELF)
    stop.set()
    for t in threads:
        t.join()
    writer.close()
    cpu = (cpu1.ru_utime + cpu1.ru_stime) - (cpu0.ru_utime + cpu0.ru_stime)
    return {"cameras": cameras, "size": f"{size[1]}x{size[0]}", "fps_requested": fps, "camera_fps": camera_fps or fps,
            "frames": st.frames, "fps_recorded": st.frames / wall, "ticks_late": late, "dropped_frames": st.dropped_frames,
            "tick_ms_p50": float(np.percentile(tick_ms, 50)), "tick_ms_p99": float(np.percentile(tick_ms, 99)),
            "save_episode_s": save_s, "cpu_s_per_s": (cpu + 0.0) / (wall + save_s),
            "mp4_bytes": sum(p.stat().st_size for p in (root / "videos").rglob("*.mp4"))}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cameras", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--fps", type=float, default=30.0, help="recording rate")
    ap.add_argument("--camera-fps", type=float, default=None, help="camera rate (default: the recording rate)")
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--size", default="640x480")
    ap.add_argument("--codec", default=None, help="video codec (default: the writer's)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    w, h = (int(v) for v in args.size.lower().split("x"))
    results = []
    for n in args.cameras:
        with tempfile.TemporaryDirectory() as d:
            results.append(run(n, args.fps, args.seconds, (h, w), Path(d) / "ds", args.codec, args.camera_fps))
    if args.json:
        print(json.dumps(results, indent=2))
    for r in results:
        print(f"{r['cameras']} camera(s) {r['size']} at {r['camera_fps']:g} Hz, recording at {r['fps_requested']:g} fps: recorded {r['fps_recorded']:.1f} "
              f"frames/s ({r['frames']} frames, {r['ticks_late']} late ticks, {r['dropped_frames']} dropped), tick "
              f"p50 {r['tick_ms_p50']:.1f} / p99 {r['tick_ms_p99']:.1f} ms, save (encode) {r['save_episode_s']:.2f} s "
              f"for {args.seconds:g} s, CPU {r['cpu_s_per_s']:.2f} core(s), mp4 {r['mp4_bytes'] / 1e6:.1f} MB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
