"""RealSense L515 probe for ``jala-hardware-check`` (registered with the ``realsense_l515`` camera kind):
pyrealsense2 (and libusb) must load, and each configured serial (``RealSenseCameraConfig.serial``) must be
listed by ``rs.context``. The SDK is loaded and the devices listed once for all configured cameras."""
from __future__ import annotations

from collections.abc import Sequence

from hardware.probes import ProbeResult, ProbeTarget, with_timeout


def probe_l515(cameras: Sequence[ProbeTarget], timeout: float) -> list[ProbeResult]:
    try:
        import pyrealsense2 as rs  # noqa: F401
    except (ImportError, OSError) as exc:
        hint = ("install libusb (sudo apt install libusb-1.0-0) and pyrealsense2==2.54.2.5684 on Python <= 3.11 "
                "(the last release with L515 support)")
        return [ProbeResult("realsense sdk", "pyrealsense2", False, f"cannot load pyrealsense2: {exc}", hint)] + [
            ProbeResult(c.name, c.config.serial, False, "not probed: pyrealsense2 is not available")
            for c in cameras]
    from hardware.realsense.camera import list_devices

    try:
        devices = with_timeout(lambda: list_devices(), max(timeout, 5.0))
    except Exception as exc:  # noqa: BLE001
        return [ProbeResult("realsense sdk", "rs.context", False, f"cannot list RealSense devices: {exc}",
                            "check USB permissions (udev rules 99-realsense-libusb.rules) and libusb")]
    serials = [d.serial for d in devices]
    out = [ProbeResult("realsense sdk", "pyrealsense2", True, f"loaded; connected cameras: {serials}")]
    by_serial = {d.serial: d for d in devices}
    for c in cameras:
        serial = c.config.serial
        d = by_serial.get(serial)
        if d is None:
            out.append(ProbeResult(c.name, serial, False, f"no camera with serial {serial}; connected: {serials}",
                                   "check the USB-C cable (USB 3) and port; the serial is printed on the camera "
                                   "and listed by rs-enumerate-devices"))
            continue
        hint = []
        if d.usb_type.startswith("2"):
            hint.append(f"connected over USB {d.usb_type}: use a USB 3 port/cable for full resolution")
        if "L515" not in d.name:
            hint.append(f"this is a {d.name}, not an L515")
        out.append(ProbeResult(c.name, serial, True,
                               f"{d.name}, firmware {d.firmware or '?'}, USB {d.usb_type or '?'}", "; ".join(hint)))
    return out
