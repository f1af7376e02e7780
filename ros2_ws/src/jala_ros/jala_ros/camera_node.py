"""Camera node: publishes sensor_msgs/Image (rgb8) + CameraInfo for one camera.

Topic names default to the realsense-ros convention (``/camera/camera/color/image_raw``,
``/camera/camera/color/camera_info``). ``header.stamp`` is the ROS time at which the frame arrived on the host
(the frame's ``received`` monotonic time mapped onto the ROS clock), so downstream latency is measured from
frame arrival. A reader thread publishes each frame as it comes; the camera's own rate sets the topic rate.

Real mode: ``ros2 run jala_ros camera_node --ros-args -p serial:=<serial>`` (hardware.realsense).
Sim mode: ``sim_devices`` creates ``CameraNode`` objects around the simulated world's cameras.
"""
from __future__ import annotations

import threading
import time

from diagnostic_msgs.msg import DiagnosticArray
from rclpy.node import Node
from sensor_msgs.msg import CameraInfo, Image

from hardware.interfaces import DeviceTimeout

from .conversions import IMAGE_PUB_QOS, camera_info_msg, image_msg
from jala_runtime.stats import RateMeter
from .node_utils import (DIAGNOSTICS_TOPIC, ERROR, OK, WARN, MonotonicToRosTime, declare, diag_array, diag_status,
                         init_ros, spin_nodes, startup_errors)
from .parameters import CameraNodeConfig, driver_params



class CameraNode(Node):
    def __init__(self, camera=None, name: str = "camera", namespace: str = "/jala", overrides: dict | None = None,
                 allowed_parameters: set[str] | None = None, **node_kwargs):
        super().__init__(name, namespace=namespace, **node_kwargs)
        self.p = declare(self, CameraNodeConfig, overrides, allowed_parameters)
        self.camera = camera
        self.image_pub = self.create_publisher(Image, self.p["image_topic"], IMAGE_PUB_QOS)
        self.info_pub = self.create_publisher(CameraInfo, self.p["info_topic"], IMAGE_PUB_QOS)
        self.diag_pub = self.create_publisher(DiagnosticArray, DIAGNOSTICS_TOPIC, 10)
        self.rate = RateMeter()
        self.frames = 0
        self.last_error = ""
        self.error_level = OK
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.ros_time = MonotonicToRosTime(self)  # frame arrival (monotonic) -> header.stamp
        self.create_timer(1.0 / self.p["diagnostics_rate_hz"], self._publish_diagnostics)
        if camera is not None:
            self.start(camera)

    def start(self, camera) -> None:
        """Start publishing frames of ``camera`` (a connected hardware.interfaces.Camera)."""
        self.camera = camera
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name=f"camera-{self.get_name()}", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        timeout = float(self.p["read_timeout_s"])
        while not self._stop.is_set():
            try:
                frame = self.camera.read(timeout=timeout)
            except Exception as exc:  # noqa: BLE001 - reported on diagnostics; the supervisor sees the gap
                if self._stop.is_set():
                    return
                # a late frame is the watchdog's business (WARN); a failing device is a fault (ERROR)
                self.error_level = WARN if isinstance(exc, DeviceTimeout) else ERROR
                if str(exc) != self.last_error:
                    self.get_logger().error(f"camera read failed: {exc}")
                self.last_error = str(exc)
                time.sleep(0.01)
                continue
            if self._stop.is_set():
                return
            stamp = self.ros_time(frame.received or time.monotonic())
            self.image_pub.publish(image_msg(frame.color, stamp, self.p["frame_id"]))
            self.info_pub.publish(camera_info_msg(frame.intrinsics, stamp, self.p["frame_id"]))
            self.frames += 1
            self.last_error = ""
            self.rate.tick()

    def _publish_diagnostics(self) -> None:
        rate = self.rate.rate()
        level = self.error_level if self.last_error else (OK if rate > 0 else WARN)
        msg = self.last_error or (f"{rate:.1f} fps" if rate > 0 else "no frames")
        self.diag_pub.publish(diag_array(self, diag_status(
            f"jala/camera/{self.p['camera_name']}", level, msg, self.p["serial"], fps=f"{rate:.2f}",
            frames=self.frames, topic=self.p["image_topic"])))

    def stop(self) -> None:
        """Stop publishing frames (the node stays up)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2.0)

    def destroy_node(self):
        self.stop()
        return super().destroy_node()


def main(args=None) -> None:
    """Real camera (hardware.realsense) as its own process."""
    from .devices import make_device

    init_ros(args)
    with startup_errors("camera_node"):
        node = CameraNode(name="camera")
        p = node.p
        # serial, name (= camera_name), color_width, color_height, color_fps, enable_depth: RealSenseCameraConfig's
        params = driver_params(CameraNodeConfig, p)
        camera = make_device("camera", p["device_kind"], params, p["driver_options"])
        camera.connect()
    node.start(camera)
    def _shutdown():
        node.destroy_node()  # stops the reader thread
        camera.disconnect()

    spin_nodes([node], on_shutdown=_shutdown)


if __name__ == "__main__":
    main()
