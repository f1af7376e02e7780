"""Intel RealSense L515 camera driver (pyrealsense2 2.54.2, the last release with L515 support).

``RealSenseCamera`` implements ``hardware.interfaces.Camera`` for a live camera (by serial) or a .bag recording;
``list_devices()`` lists connected cameras; ``synthetic.write_synthetic_bag`` makes L515-like test recordings.
pyrealsense2 itself is imported only when a camera is used, so this package imports without libusb.
"""
from hardware.realsense.camera import (RealSenseCamera, RealSenseDeviceInfo, intrinsics_from_profile,
                                       list_devices)
from hardware.realsense.config import (L515_COLOR_PROFILES, L515_DEFAULT_DEPTH_UNITS_M, L515_DEPTH_PROFILES,
                                       ConfigError, RealSenseCameraConfig)

__all__ = [
    "ConfigError", "L515_COLOR_PROFILES", "L515_DEFAULT_DEPTH_UNITS_M", "L515_DEPTH_PROFILES", "RealSenseCamera",
    "RealSenseCameraConfig", "RealSenseDeviceInfo", "intrinsics_from_profile", "list_devices",
]
