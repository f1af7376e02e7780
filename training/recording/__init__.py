"""Demonstration recording: LeRobot v3.0 datasets (crash-safe writer + small reader) and raw rosbag2 (MCAP) logs."""
from training.recording.lerobot_v3 import (CODEBASE_VERSION, DEFAULT_FEATURES, LeRobotV3Dataset, LeRobotV3Writer,
                                           aggregate_stats, recover, robot_features)
from training.recording.rosbag import RawBagWriter, episode_bag_path

__all__ = [
    "CODEBASE_VERSION", "DEFAULT_FEATURES", "LeRobotV3Dataset", "LeRobotV3Writer", "RawBagWriter", "aggregate_stats",
    "episode_bag_path", "recover", "robot_features",
]
