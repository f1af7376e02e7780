"""Message <-> numpy conversions and the QoS profiles the nodes agree on."""
from __future__ import annotations

import numpy as np
from builtin_interfaces.msg import Duration, Time
from rclpy.qos import (DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy)
from sensor_msgs.msg import CameraInfo, Image, JointState
from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint

from jala_runtime.chunk import ChunkError, TimedChunk

# Images: reliable, keep last 1 (realsense-ros default is reliable; best-effort subscribers also match).
IMAGE_PUB_QOS = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=1, reliability=ReliabilityPolicy.RELIABLE)
# Consumers of images only want the newest frame.
IMAGE_SUB_QOS = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=1, reliability=ReliabilityPolicy.BEST_EFFORT)
STATE_QOS = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=10, reliability=ReliabilityPolicy.RELIABLE)
CHUNK_QOS = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=4, reliability=ReliabilityPolicy.RELIABLE)
# Latched commands/state (hold, running): late joiners get the current value.
LATCHED_QOS = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=1, reliability=ReliabilityPolicy.RELIABLE,
                         durability=DurabilityPolicy.TRANSIENT_LOCAL)


def to_time_msg(t: float) -> Time:
    sec = int(np.floor(t))
    return Time(sec=sec, nanosec=min(int(round((t - sec) * 1e9)), 999_999_999))


def from_time_msg(msg: Time) -> float:
    return msg.sec + msg.nanosec * 1e-9


def to_duration_msg(d: float) -> Duration:
    sec = int(np.floor(d))
    return Duration(sec=sec, nanosec=min(int(round((d - sec) * 1e9)), 999_999_999))


def from_duration_msg(msg: Duration) -> float:
    return msg.sec + msg.nanosec * 1e-9


# ----------------------------------------------------------------------------------------------- images
def image_msg(color: np.ndarray, stamp: float, frame_id: str) -> Image:
    if color.ndim != 3 or color.shape[2] != 3 or color.dtype != np.uint8:
        raise ValueError(f"expected HxWx3 uint8 RGB, got {color.shape} {color.dtype}")
    msg = Image()
    msg.header.stamp = to_time_msg(stamp)
    msg.header.frame_id = frame_id
    msg.height, msg.width = int(color.shape[0]), int(color.shape[1])
    msg.encoding = "rgb8"
    msg.is_bigendian = 0
    msg.step = msg.width * 3
    msg.data = np.ascontiguousarray(color).tobytes()
    return msg


def image_to_array(msg: Image) -> np.ndarray:
    """HxWx3 uint8 RGB from an rgb8/bgr8 Image."""
    if msg.encoding not in ("rgb8", "bgr8"):
        raise ValueError(f"unsupported image encoding {msg.encoding!r} (need rgb8 or bgr8)")
    buf = np.frombuffer(msg.data, dtype=np.uint8)  # array.array / bytes: no copy
    if msg.step < msg.width * 3 or buf.size < msg.step * msg.height:
        raise ValueError(f"image buffer {buf.size} B too small for {msg.height}x{msg.width} step {msg.step}")
    img = buf[: msg.step * msg.height].reshape(msg.height, msg.step)[:, : msg.width * 3].reshape(
        msg.height, msg.width, 3)
    if msg.encoding == "bgr8":
        img = img[:, :, ::-1]
    return np.ascontiguousarray(img)


def camera_info_msg(intr, stamp: float, frame_id: str) -> CameraInfo:
    msg = CameraInfo()
    msg.header.stamp = to_time_msg(stamp)
    msg.header.frame_id = frame_id
    msg.width, msg.height = int(intr.width), int(intr.height)
    msg.distortion_model = intr.model
    msg.d = [float(c) for c in intr.coeffs]
    msg.k = [float(intr.fx), 0.0, float(intr.cx), 0.0, float(intr.fy), float(intr.cy), 0.0, 0.0, 1.0]
    msg.r = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0]
    msg.p = [float(intr.fx), 0.0, float(intr.cx), 0.0, 0.0, float(intr.fy), float(intr.cy), 0.0, 0.0, 0.0, 1.0, 0.0]
    return msg


# ----------------------------------------------------------------------------------------- joint states
def joint_state_msg(names, position, velocity=None, effort=None, stamp: float = 0.0) -> JointState:
    msg = JointState()
    msg.header.stamp = to_time_msg(stamp)
    msg.name = list(names)
    msg.position = [float(v) for v in position]
    if velocity is not None:
        msg.velocity = [float(v) for v in velocity]
    if effort is not None:
        msg.effort = [float(v) for v in effort]
    return msg


def joint_positions(msg: JointState, names) -> np.ndarray:
    """Positions of ``names`` in that order; ValueError when one is missing."""
    idx = {n: i for i, n in enumerate(msg.name)}
    missing = [n for n in names if n not in idx]
    if missing:
        raise ValueError(f"joint state lacks {missing}")
    return np.array([msg.position[idx[n]] for n in names], dtype=np.float64)


# --------------------------------------------------------------------------------------------- chunks
def chunk_to_trajectory(chunk: TimedChunk) -> JointTrajectory:
    """A TimedChunk as a JointTrajectory: header.stamp = the observation stamp, time_from_start = waypoint time
    minus the stamp (the same absolute times on the receiving side)."""
    return trajectory_msg(chunk.positions, chunk.times, chunk.stamp, chunk.joint_names)


def trajectory_msg(positions, times, stamp: float, joint_names) -> JointTrajectory:
    """A JointTrajectory from raw arrays, without validation (what the chunk topic carries; tests and fault
    injection build malformed ones with it). ``times`` are absolute, on the clock of ``stamp``."""
    positions = np.asarray(positions, dtype=np.float64)
    if positions.shape[1] != len(joint_names):
        raise ValueError(f"chunk has {positions.shape[1]} columns for {len(joint_names)} joint names")
    msg = JointTrajectory()
    msg.header.stamp = to_time_msg(stamp)
    msg.joint_names = list(joint_names)
    for a, t in zip(positions, np.asarray(times, dtype=np.float64)):
        p = JointTrajectoryPoint()
        p.positions = [float(v) for v in a]
        p.time_from_start = to_duration_msg(max(0.0, float(t) - stamp))
        msg.points.append(p)
    return msg


def trajectory_to_chunk(msg: JointTrajectory) -> TimedChunk:
    """Validated TimedChunk from a JointTrajectory; raises ChunkError with a clear reason."""
    if not msg.points:
        raise ChunkError("chunk has no points")
    stamp = from_time_msg(msg.header.stamp)
    if stamp <= 0:
        raise ChunkError(f"chunk header stamp {stamp} is not a valid time")
    n = len(msg.joint_names)
    rows = []
    for i, p in enumerate(msg.points):
        if len(p.positions) != n:
            raise ChunkError(f"chunk point {i} has {len(p.positions)} positions for {n} joint names")
        rows.append(p.positions)
    tfs = np.array([from_duration_msg(p.time_from_start) for p in msg.points])
    return TimedChunk.from_relative(stamp, tfs, np.array(rows, dtype=np.float64), tuple(msg.joint_names))
