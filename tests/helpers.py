"""Helpers shared by the tests."""
from __future__ import annotations

import socket
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ROS_SRC = ROOT / "ros2_ws" / "src"


def use_ros_packages() -> None:
    """Make the ament_python packages importable from the source tree (as a colcon install would)."""
    for p in (ROS_SRC / "jala_ros", ROS_SRC / "jala_bringup"):
        if str(p) not in sys.path:
            sys.path.insert(0, str(p))


def wait_until(pred, timeout: float = 5.0, period: float = 0.01):
    """Poll ``pred`` until it returns something truthy (returned); AssertionError after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = pred()
        if value:
            return value
        time.sleep(period)
    raise AssertionError(f"condition not met within {timeout} s")


def free_port() -> int:
    """A loopback TCP port with nothing listening on it (closed again)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# A robot observation for the policy tests: FR3 joints (rad) + Inspire angles (0..1000).
SAMPLE_PROPRIO = (0.0, -0.3, 0.0, -2.0, 0.0, 1.8, 0.8, 1000, 1000, 1000, 1000, 900, 500)


def tiny_policy(image_hw: tuple[int, int], seed: int = 0):
    """The tiny random JalaPolicy the policy tests share (seeded)."""
    import torch

    from jala_policy import JalaPolicy, JalaPolicyConfig

    torch.manual_seed(seed)
    return JalaPolicy.build(JalaPolicyConfig.from_preset("tiny", input_image_hw=image_hw))


def sample_observation(image_hw: tuple[int, int], seed: int = 0):
    """(random uint8 RGB image of ``image_hw``, SAMPLE_PROPRIO as float64)."""
    import numpy as np

    img = np.random.default_rng(seed).integers(0, 256, (*image_hw, 3), dtype=np.uint8)
    return img, np.array(SAMPLE_PROPRIO, dtype=np.float64)


def demo_frame_grey(i: int) -> int:
    """The flat grey level of frame ``i`` in ``write_demo_dataset``'s videos."""
    return 20 + (i * 7) % 200


def write_demo_dataset(root, fps: int, lengths: list[int], *, hw: tuple[int, int], task: str,
                       views: tuple[str, ...] = ("camera",), smooth: bool = False, centre=None,
                       scale=1.0):
    """A hand-made LeRobot v3.0 demonstration dataset (the project's writer), one episode per entry of
    ``lengths``. Values encode time: state[0] is the frame's timestamp, action[0] the timestamp + 1 s, action[1]
    the frame index; each frame is one flat grey level (``demo_frame_grey``; video compression keeps a flat
    frame within a few levels). ``smooth``: state and action follow smooth curves of time instead (a trajectory
    a policy can learn), ``centre + scale * sin(...)`` per joint."""
    import numpy as np

    from embodiment import ACTION_DIM
    from training.recording.lerobot_v3 import LeRobotV3Writer, robot_features

    writer = LeRobotV3Writer.create(root, fps=fps, features=robot_features({v: hw for v in views}),
                                    video_codec="h264")
    rng = np.random.default_rng(len(lengths) * 100 + fps)
    freq, phase = rng.uniform(0.5, 2.0, ACTION_DIM), rng.uniform(0, 2 * np.pi, ACTION_DIM)
    for n in lengths:
        writer.start_episode(task)
        for i in range(n):
            t = i / fps
            state = rng.normal(size=ACTION_DIM).astype(np.float32)
            state[0] = t
            action = rng.normal(size=ACTION_DIM).astype(np.float32)
            action[0], action[1] = t + 1.0, i
            if smooth:
                c = np.zeros(ACTION_DIM) if centre is None else np.asarray(centre, dtype=float)
                state = (c + scale * np.sin(freq * t + phase)).astype(np.float32)
                action = (c + scale * np.sin(freq * (t + 1 / fps) + phase)).astype(np.float32)
            frame = {"observation.state": state, "action": action}
            for v in views:
                frame[f"observation.images.{v}"] = np.full((*hw, 3), demo_frame_grey(i), np.uint8)
            writer.add_frame(frame)
        writer.save_episode()
    writer.close()
    return root


def run_python(code: str, timeout: float = 120.0):
    """Run ``code`` in a fresh interpreter at the repository root (for what must be checked in a clean process,
    e.g. which modules an import pulls in); AssertionError with its stderr when it fails. Returns the result."""
    import os
    import subprocess

    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=timeout)
    assert proc.returncode == 0, proc.stderr
    return proc
