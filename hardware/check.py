"""``jala-hardware-check``: is every configured device there? Probes each one with a short timeout and prints a
table of OK / MISSING with the reason and a hint. Exit code 0 when all configured devices answer, 1 when any
is missing, 2 for a bad command line or config file.

Devices are the kinds of ``hardware.registry``, each configured with its driver's own config dataclass, and
probed by its registered probe (independent: one failing or hanging does not stop the others; they run in
parallel). The built-in kinds and what their probes do:
* robot, ``franka_fr3`` (hardware/franka/probe.py): libfranka's Connect handshake on the robot's command port
  1337 (served only while FCI is active); the connection is closed right after the reply and nothing else is
  sent (no motion, no settings). With ``--franky`` also a real libfranka connection through franky that reads the
  robot state. A hint says when this PC's kernel is not PREEMPT_RT.
* hand, ``inspire_rh56`` (hardware/inspire/probe.py): Modbus TCP or RTU, read of the six ANGLE_ACT registers.
* cameras, ``realsense_l515`` (hardware/realsense/probe.py): pyrealsense2 (and libusb) must load; each configured
  serial must be listed by ``rs.context``.

Config (YAML; every section optional, command-line options override it)::

    timeout_s: 2.0
    robot: {ip: 172.16.0.2, port: 1337, franky: false}
    hand: {transport: tcp, host: 192.168.11.210, port: 6000, device_id: 1}
    #  or hand: {transport: rtu, serial_port: /dev/ttyUSB0, baudrate: 115200, device_id: 1}
    cameras:
      - {name: wrist, serial: "f1230001"}
      - {name: scene, serial: "f1230002"}

A section's keys are the field names of its kind's driver config (``FrankaArmConfig``, ``InspireHandConfig``,
``RealSenseCameraConfig``; unset ones keep the driver's defaults), plus the kind's probe options (robot: ``port``,
the libfranka command port, and ``franky``), plus an optional ``kind`` naming another registered kind of that
role. ``robot.ip`` is the FR3's ``robot_ip``. A camera may also be given as just its serial. A top-level
``hardware:`` mapping holding these keys is accepted too (so a larger runtime config can be used).
"""
from __future__ import annotations

import argparse
import concurrent.futures as cf
import json
import logging
import sys
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from embodiment import DEVICE_KINDS
from hardware import registry
from hardware.probes import ProbeResult, ProbeTarget

__all__ = ["CheckConfig", "CheckConfigError", "DEFAULT_KINDS", "DeviceCheck", "ProbeResult", "ProbeTarget",
           "build_parser", "config_from_args", "config_from_dict", "format_table", "load_config", "main",
           "run_checks"]

SECTIONS = {"robot": "arm", "hand": "hand", "cameras": "camera"}  # config section -> device role
DEFAULT_KINDS = DEVICE_KINDS  # the robot's drivers (embodiment); a section's ``kind:`` or --<role>-kind picks another
# Keys of this tool's YAML format that predate the registry, and the config field each one sets.
LEGACY_KEYS: dict[str, dict[str, str]] = {"robot": {"ip": "robot_ip"}}


class CheckConfigError(ValueError):
    pass


@dataclass
class DeviceCheck:
    """One configured device: its registered kind and what its probe gets."""

    spec: registry.DeviceKind
    target: ProbeTarget


@dataclass
class CheckConfig:
    robot: DeviceCheck | None = None
    hand: DeviceCheck | None = None
    cameras: list[DeviceCheck] = field(default_factory=list)
    timeout_s: float = 2.0

    def devices(self) -> list[DeviceCheck]:
        return [d for d in (self.robot, self.hand) if d is not None] + list(self.cameras)


@dataclass
class _Sections:
    """The config as plain per-section dicts (config field names), before the device configs are built, so the
    command line can override single fields."""

    robot: dict | None = None
    hand: dict | None = None
    cameras: list[dict] = field(default_factory=list)
    timeout_s: float = 2.0


# ------------------------------------------------------------------------------------------------ config
def _mapping(value, what: str) -> dict:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise CheckConfigError(f"{what} must be a mapping, got {type(value).__name__}")
    return dict(value)


def _timeout(t, what: str) -> float:
    if isinstance(t, bool) or not isinstance(t, (int, float)) or not 0 < t <= 60:
        raise CheckConfigError(f"{what} must be in (0, 60], got {t!r}")
    return float(t)


def _section(data, section: str) -> dict:
    d = _mapping(data, section)
    for old, new in LEGACY_KEYS.get(section, {}).items():
        if old in d:
            if new in d:
                raise CheckConfigError(f"{section}: give {old!r} or {new!r}, not both")
            d[new] = d.pop(old)
    return d


def _sections_from_dict(data) -> _Sections:
    data = _mapping(data, "config")
    if "hardware" in data:
        data = _mapping(data["hardware"], "hardware")
    unknown = sorted(set(data) - set(SECTIONS) - {"timeout_s"})
    if unknown:
        raise CheckConfigError(f"unknown keys in config: {unknown}; allowed: {sorted(SECTIONS) + ['timeout_s']}")
    out = _Sections()
    if "timeout_s" in data:
        out.timeout_s = _timeout(data["timeout_s"], "timeout_s")
    if data.get("robot") is not None:
        out.robot = _section(data["robot"], "robot")
    if data.get("hand") is not None:
        out.hand = _section(data["hand"], "hand")
    cams = data.get("cameras") or []
    if not isinstance(cams, list):
        raise CheckConfigError("cameras must be a list of {name, serial}")
    for i, c in enumerate(cams):
        c = {"serial": c} if isinstance(c, (str, int)) and not isinstance(c, bool) else _mapping(c, f"cameras[{i}]")
        if isinstance(c.get("serial"), int) and not isinstance(c["serial"], bool):  # YAML reads 123 as an int
            c["serial"] = str(c["serial"])
        out.cameras.append(c)
    return out


def _device(what: str, role: str, params: dict, table_name, defaults: Mapping[str, Any] | None = None) -> DeviceCheck:
    """A DeviceCheck from one config section: ``kind`` picks the registration, the config-field keys build its
    driver config, the probe-option keys its probe options. ``table_name(config)`` names it in the table."""
    params = dict(params)
    kind = params.pop("kind", None) or DEFAULT_KINDS[role]
    try:
        spec = registry.get(role, str(kind))
    except ValueError as exc:
        raise CheckConfigError(f"{what}: {exc}") from None
    if spec.probe is None:
        raise CheckConfigError(f"{what}: the {role} kind {spec.name!r} has no hardware probe")
    option_fields = registry.config_fields(spec.probe_options) if spec.probe_options is not None else ()
    unknown = sorted(set(params) - set(spec.config_fields) - set(option_fields))
    if unknown:
        allowed = sorted({"kind", *spec.config_fields, *option_fields, *LEGACY_KEYS.get(what, {})})
        raise CheckConfigError(f"unknown keys in {what}: {unknown}; allowed: {allowed}")
    for key, value in (defaults or {}).items():
        if key in spec.config_fields:
            params.setdefault(key, value)
    options = {k: params.pop(k) for k in option_fields if k in params}
    try:
        config = registry.build_config(spec, params)
        opts = registry.build_config(spec.probe_options, options) if spec.probe_options is not None else None
    except (TypeError, ValueError) as exc:
        raise CheckConfigError(f"{what}: {exc}") from None
    return DeviceCheck(spec, ProbeTarget(table_name(config), config, opts))


def _build(sections: _Sections) -> CheckConfig:
    cfg = CheckConfig(timeout_s=sections.timeout_s)
    if sections.robot is not None:
        cfg.robot = _device("robot", "arm", sections.robot, lambda _c: "robot")
    if sections.hand is not None:
        cfg.hand = _device("hand", "hand", sections.hand, lambda _c: "hand")
    for i, c in enumerate(sections.cameras):
        what = f"cameras[{i}]"
        if not str(c.get("serial", "")).strip():
            raise CheckConfigError(f"{what} needs a serial")
        cfg.cameras.append(_device(what, "camera", c, lambda conf, i=i: f"camera {getattr(conf, 'name', i)}",
                                   defaults={"name": f"camera{i}"}))
    return cfg


def config_from_dict(data: dict) -> CheckConfig:
    return _build(_sections_from_dict(data))


def _read_yaml(path: str):
    import yaml

    try:
        with open(path, encoding="utf-8") as fh:
            return yaml.safe_load(fh) or {}
    except OSError as exc:
        raise CheckConfigError(f"cannot read config {path}: {exc}") from exc
    except yaml.YAMLError as exc:
        raise CheckConfigError(f"config {path} is not valid YAML: {exc}") from exc


def load_config(path: str) -> CheckConfig:
    return config_from_dict(_read_yaml(path))


# ------------------------------------------------------------------------------------------------ running
def run_checks(cfg: CheckConfig) -> list[ProbeResult]:
    """Run every configured probe (one call per device kind, all kinds in parallel); a probe that crashes is
    reported as MISSING, never raised."""
    groups: dict[tuple[str, str], tuple[registry.DeviceKind, list[ProbeTarget]]] = {}
    for dev in cfg.devices():
        groups.setdefault((dev.spec.role, dev.spec.name), (dev.spec, []))[1].append(dev.target)
    results: list[ProbeResult] = []
    with cf.ThreadPoolExecutor(max_workers=max(1, len(groups))) as pool:
        futures = [(spec, targets, pool.submit(spec.probe, list(targets), cfg.timeout_s))
                   for spec, targets in groups.values()]
        for spec, targets, fut in futures:
            try:
                results.extend(fut.result(timeout=cfg.timeout_s * 3 + 10))
            except Exception as exc:  # noqa: BLE001 - a broken probe must not hide the others
                results.append(ProbeResult(", ".join(t.name for t in targets), spec.name, False,
                                           f"probe failed: {type(exc).__name__}: {exc}"))
    return results


def format_table(results: Sequence[ProbeResult]) -> str:
    rows = [("DEVICE", "TARGET", "STATUS", "DETAIL")] + [(r.device, r.target, r.status, r.detail) for r in results]
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    lines = []
    for k, row in enumerate(rows):
        lines.append("  ".join(row[i].ljust(widths[i]) for i in range(3)) + "  " + row[3])
        if k > 0 and results[k - 1].hint:
            lines.append(" " * (sum(widths) + 6) + "hint: " + results[k - 1].hint)
    return "\n".join(lines)


# -------------------------------------------------------------------------------------------------- main
def _parse_camera(text: str) -> tuple[str, str]:
    name, sep, serial = text.partition("=")
    if not sep:
        name, serial = "", text
    if not serial.strip():
        raise argparse.ArgumentTypeError(f"--camera needs SERIAL or NAME=SERIAL, got {text!r}")
    return name.strip(), serial.strip()


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="jala-hardware-check", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", help="YAML device config (see module docs); options below override it")
    p.add_argument("--robot-ip", help="Franka FR3 controller address, e.g. 172.16.0.2")
    p.add_argument("--robot-port", type=int, help="libfranka command port (default 1337)")
    p.add_argument("--franky", action="store_true", help="also connect through franky and read the robot state")
    p.add_argument("--hand-host", help="Inspire hand Modbus TCP address (transport tcp)")
    p.add_argument("--hand-port", type=int, help="Inspire hand Modbus TCP port (default: the driver's)")
    p.add_argument("--hand-serial", help="Inspire hand serial port for Modbus RTU, e.g. /dev/ttyUSB0")
    p.add_argument("--hand-baudrate", type=int, help="Modbus RTU baud rate (default: the driver's)")
    p.add_argument("--hand-device-id", type=int, help="Modbus device id of the hand (default: the driver's)")
    p.add_argument("--camera", action="append", type=_parse_camera, metavar="[NAME=]SERIAL",
                   help="RealSense serial to expect (repeatable; replaces the config's cameras)")
    for section, role in SECTIONS.items():
        p.add_argument(f"--{role}-kind", metavar="KIND",
                       help=f"registered {role} kind for the {section} section (default {DEFAULT_KINDS[role]})")
    p.add_argument("--timeout", type=float, help="per-probe timeout in seconds (default 2)")
    p.add_argument("--skip", action="append", choices=tuple(SECTIONS), default=[],
                   help="do not probe this device kind")
    p.add_argument("--json", action="store_true", help="print the results as JSON instead of a table")
    return p


def config_from_args(args: argparse.Namespace) -> CheckConfig:
    s = _sections_from_dict(_read_yaml(args.config)) if args.config else _Sections()
    if args.robot_ip:
        s.robot = {**(s.robot or {}), "robot_ip": args.robot_ip}
    if s.robot is not None:
        if args.robot_port is not None:
            s.robot["port"] = args.robot_port
        if args.franky:
            s.robot["franky"] = True
        if args.arm_kind:
            s.robot["kind"] = args.arm_kind
    if args.hand_host or args.hand_serial:
        s.hand = s.hand or {}
        if args.hand_host:
            s.hand.update(transport="tcp", host=args.hand_host)
        if args.hand_serial:
            s.hand.update(transport="rtu", serial_port=args.hand_serial)
    if s.hand is not None:
        for key in ("port", "baudrate", "device_id"):
            value = getattr(args, f"hand_{key}")
            if value is not None:
                s.hand[key] = value
        if args.hand_kind:
            s.hand["kind"] = args.hand_kind
    if args.camera:
        s.cameras = [{"name": name or f"camera{i}", "serial": serial} for i, (name, serial) in enumerate(args.camera)]
    if args.camera_kind:
        for c in s.cameras:
            c["kind"] = args.camera_kind
    if args.timeout is not None:
        s.timeout_s = _timeout(args.timeout, "--timeout")
    if "robot" in args.skip:
        s.robot = None
    if "hand" in args.skip:
        s.hand = None
    if "cameras" in args.skip:
        s.cameras = []
    return _build(s)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        cfg = config_from_args(args)
    except CheckConfigError as exc:
        print(f"jala-hardware-check: {exc}", file=sys.stderr)
        return 2
    if not cfg.devices():
        print("jala-hardware-check: nothing to check: give --config or --robot-ip / --hand-host / --hand-serial / "
              "--camera", file=sys.stderr)
        return 2
    logging.getLogger("pymodbus").setLevel(logging.CRITICAL)  # the table says it; no retry chatter on stderr
    results = run_checks(cfg)
    missing = [r for r in results if not r.ok]
    if args.json:
        print(json.dumps({"ok": not missing, "results": [asdict(r) | {"status": r.status} for r in results]},
                         indent=2))
    else:
        print(format_table(results))
        print()
        print(f"{len(missing)} missing of {len(results)} checked" if missing else f"all {len(results)} OK")
    return 1 if missing else 0


if __name__ == "__main__":
    sys.exit(main())
