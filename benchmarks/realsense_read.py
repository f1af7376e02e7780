"""Cost of RealSenseCamera.read() on this CPU: a synthetic L515-like recording is replayed (not in real time, so
the SDK delivers frames as fast as they are read) and each read is timed: decode of the bag + RGB copy, and
with depth, rs.align depth->colour + conversion to float32 metres.

    python -m benchmarks.realsense_read                       # 1280x720 colour, 1024x768 depth, 60 frames
    python -m benchmarks.realsense_read --frames 120 --color 960x540 --depth 640x480

Prints frames/s and the per-read latency p50/p90/p99 for: colour only, colour + depth aligned to colour, colour +
unaligned depth. A live L515 delivers 30 fps, so a read costing more than ~33 ms on the robot PC would fall
behind. Playback adds bag decompression that a live camera does not have (and lacks USB transfer costs).
"""
from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time

import numpy as np

from hardware.realsense import RealSenseCamera, RealSenseCameraConfig
from hardware.realsense.synthetic import write_synthetic_bag


def _size(text: str) -> tuple[int, int]:
    w, h = text.lower().split("x")
    return int(w), int(h)


def run(path: str, color: tuple[int, int], depth: tuple[int, int], enable_depth: bool, align: bool,
        n: int) -> dict:
    cfg = RealSenseCameraConfig(name="bench", playback_file=path, color_width=color[0], color_height=color[1],
                                depth_width=depth[0], depth_height=depth[1], enable_depth=enable_depth,
                                align_depth_to_color=align)
    lat = []
    with RealSenseCamera(cfg) as cam:
        t_start = time.perf_counter()
        for _ in range(n):
            t0 = time.perf_counter()
            cam.read(2.0)
            lat.append(time.perf_counter() - t0)
        total = time.perf_counter() - t_start
    lat_ms = np.array(lat[1:]) * 1000  # the first read includes the pipeline start
    return {"fps": (n - 1) / (total - lat[0]), "p50": np.percentile(lat_ms, 50),
            "p90": np.percentile(lat_ms, 90), "p99": np.percentile(lat_ms, 99)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--frames", type=int, default=60)
    ap.add_argument("--color", type=_size, default=(1280, 720))
    ap.add_argument("--depth", type=_size, default=(1024, 768))
    args = ap.parse_args()
    print(f"host: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
          f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}")
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "bench.bag")
        t0 = time.perf_counter()
        write_synthetic_bag(path, n_frames=args.frames, color_size=args.color, depth_size=args.depth)
        print(f"wrote {args.frames} frames ({os.path.getsize(path) / 1e6:.1f} MB bag) in "
              f"{time.perf_counter() - t0:.2f} s")
        c, d = args.color, args.depth
        for label, enable_depth, align in (("colour only", False, False),
                                           ("colour + depth aligned to colour", True, True),
                                           ("colour + unaligned depth", True, False)):
            r = run(path, c, d, enable_depth, align, args.frames)
            print(f"{label:34s} colour {c[0]}x{c[1]} depth {d[0]}x{d[1]}: {r['fps']:7.1f} frames/s  "
                  f"read p50 {r['p50']:6.2f} ms  p90 {r['p90']:6.2f} ms  p99 {r['p99']:6.2f} ms")


if __name__ == "__main__":
    main()
