"""Registers the Intel RealSense L515 (pyrealsense2) as the ``realsense_l515`` camera kind.

pyrealsense2 is imported only when a camera is made or probed.
"""
from __future__ import annotations

from hardware.realsense.config import RealSenseCameraConfig
from hardware.realsense.probe import probe_l515
from hardware.registry import register


@register("camera", "realsense_l515", RealSenseCameraConfig, probe=probe_l515,
          description="Intel RealSense L515 colour + depth camera (pyrealsense2 2.54)")
def make_realsense_l515(config: RealSenseCameraConfig):
    from hardware.realsense.camera import RealSenseCamera

    return RealSenseCamera(config)
