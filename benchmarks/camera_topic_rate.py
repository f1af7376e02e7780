"""Camera images over DDS: the real camera node process (RealSense driver) replays a synthetic L515 recording in
real time at each colour profile, and an observer node in this process counts what arrives. Prints the rate the
node published (its diagnostics) and the rate received, per resolution.

    python -m benchmarks.camera_topic_rate                     # 960x540, 1280x720, 1920x1080 at 30 fps
    python -m benchmarks.camera_topic_rate --sizes 960x540 --seconds 10

Large images need the shared-memory transport of the loopback Fast DDS profile (jala_bringup/config/
fastdds_loopback.xml); over UDP fragments a best-effort reader loses most frames.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

from benchmarks import use_ros_packages

use_ros_packages()

from jala_bringup.graph import GraphArgs, build_graph  # noqa: E402
from jala_bringup.ros_env import apply_loopback_env, loopback_env  # noqa: E402
from jala_bringup.run import GraphProcesses, published_rate  # noqa: E402

DOMAIN = 88
FPS = 30


def measure(size: tuple[int, int], seconds: float, workdir: Path, node) -> dict:
    from diagnostic_msgs.msg import DiagnosticArray
    from sensor_msgs.msg import Image

    from hardware.realsense.synthetic import write_synthetic_bag
    from jala_ros.conversions import IMAGE_SUB_QOS
    from jala_ros.node_utils import values_of

    w, h = size
    bag = workdir / f"l515_{w}x{h}.bag"
    write_synthetic_bag(bag, n_frames=FPS, color_size=size, depth_size=None, fps=FPS, paced=True)
    playback = {"playback_file": str(bag), "playback_real_time": True, "playback_repeat": True}
    args = GraphArgs(task="water_plant", sim=False, robot_ip="127.0.0.1",
                     overrides={"camera": {"driver_options": json.dumps(playback), "color_width": w, "color_height": h,
                                           "color_fps": FPS}})
    arrivals: list[float] = []
    published: list[tuple[float, int]] = []

    def on_diag(msg):
        for st in msg.status:
            if st.name.startswith("jala/camera/"):
                published.append((time.monotonic(), int(values_of(st).get("frames", 0))))

    subs = [node.create_subscription(Image, "/camera/camera/color/image_raw",
                                     lambda _m: arrivals.append(time.monotonic()), IMAGE_SUB_QOS),
            node.create_subscription(DiagnosticArray, "/diagnostics", on_diag, 10)]
    procs = GraphProcesses([s for s in build_graph(args) if s.role == "camera"], loopback_env(DOMAIN), workdir)
    procs.start()
    try:
        end = time.monotonic() + 60
        while len(arrivals) < 5:
            if procs.dead() or time.monotonic() > end:
                return {"size": f"{w}x{h}", "error": "no frames from the camera node"}
            time.sleep(0.05)
        t0 = time.monotonic()
        time.sleep(seconds)
        t1 = time.monotonic()
    finally:
        procs.stop()
        for s in subs:
            node.destroy_subscription(s)
    got = [t for t in arrivals if t0 <= t <= t1]
    return {"size": f"{w}x{h}", "mbytes": w * h * 3 / 1e6, "published_hz": published_rate(published, t0, t1),
            "received_hz": len(got) / (t1 - t0)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", nargs="+", default=["960x540", "1280x720", "1920x1080"])
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args(argv)
    import rclpy

    from jala_ros.node_utils import BackgroundSpin

    apply_loopback_env(DOMAIN)
    rclpy.init(domain_id=DOMAIN)
    node = rclpy.create_node("camera_rate_probe")
    spin = BackgroundSpin([node])
    rows = []
    try:
        with tempfile.TemporaryDirectory(prefix="camera_rate_") as d:
            for s in a.sizes:
                w, h = (int(v) for v in s.lower().split("x"))
                rows.append(measure((w, h), a.seconds, Path(d), node))
    finally:
        spin.close()
        node.destroy_node()
        rclpy.try_shutdown()
    if a.json:
        print(json.dumps(rows, indent=1))
        return 0
    print(f"camera topic over DDS on {platform.node()} ({os.cpu_count()} CPUs), recordings at {FPS} fps, "
          f"{a.seconds:.0f} s each")
    for r in rows:
        if "error" in r:
            print(f"  {r['size']:>10}: {r['error']}")
        else:
            print(f"  {r['size']:>10} ({r['mbytes']:.1f} MB/frame): published {r['published_hz']:5.1f} Hz, "
                  f"received {r['received_hz']:5.1f} Hz")
    return 1 if any("error" in r for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
