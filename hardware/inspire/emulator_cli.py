"""Command line of the Inspire hand emulator: ``jala-inspire-emulator`` or ``python -m hardware.inspire.emulator``
(``--help``). Serves one emulated hand over Modbus TCP (default: loopback, the hand's port ``INSPIRE_MODBUS_PORT``),
over Modbus RTU on a serial device (``--rtu``), or on a virtual serial pair (``--rtu-pty``) until SIGINT/SIGTERM.
Start-up problems (port in use or out of range, no such device) are one line on stderr and exit code 2."""
from __future__ import annotations

import argparse
import errno
import logging
import os
import signal
import socket
import sys
import threading
from collections.abc import Sequence

from embodiment import HAND_DOF, INSPIRE_BAUDRATE, INSPIRE_DEVICE_ID, INSPIRE_MODBUS_PORT
from hardware.inspire import registers as R
from hardware.inspire.emulator import InspireHandEmulator
from hardware.inspire.emulator_config import InspireEmulatorConfig


def _parse_contacts(text: str) -> list[float | None]:
    parts = [p.strip().lower() for p in text.split(",")]
    if len(parts) != HAND_DOF:
        raise argparse.ArgumentTypeError(f"need {HAND_DOF} comma-separated values (number or 'none')")
    try:
        return [None if p in ("none", "") else float(p) for p in parts]
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


_PROG = "jala-inspire-emulator"


def _tcp_listen_problem(host: str, port: int) -> str | None:
    """Why ``host:port`` cannot be listened on (a one-line reason), or None. Binds a throw-away socket the way
    asyncio's server does (SO_REUSEADDR on POSIX: a port in TIME_WAIT is free, one with a listener is not)."""
    try:
        family, kind, proto, _, addr = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM,
                                                          flags=socket.AI_PASSIVE)[0]
    except (socket.gaierror, UnicodeError) as exc:
        return f"cannot listen on {host!r}: {getattr(exc, 'strerror', None) or exc}"
    try:
        with socket.socket(family, kind, proto) as s:
            if os.name == "posix":
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind(addr)
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            return f"port {port} is in use on {host} (another emulator or hand bridge?)"
        if exc.errno == errno.EACCES:
            return (f"port {port} on {host}: permission denied (ports below 1024 need root; "
                    f"use e.g. {INSPIRE_MODBUS_PORT})")
        if exc.errno == errno.EADDRNOTAVAIL:
            return f"cannot listen on {host}: not an address of this machine"
        return f"cannot listen on {host}:{port}: {exc.strerror or exc}"
    return None


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=_PROG,
                                     description="Emulated Inspire RH56 hand served over Modbus TCP or RTU.")
    parser.add_argument("--host", default="127.0.0.1", help="TCP address to listen on (keep it loopback)")
    parser.add_argument("--port", type=int, default=INSPIRE_MODBUS_PORT, help="TCP port (0 = any free port)")
    parser.add_argument("--rtu", metavar="DEVICE", help="serve Modbus RTU on this serial device instead of TCP")
    parser.add_argument("--rtu-pty", action="store_true",
                        help="serve Modbus RTU on a virtual serial pair and print the path for the driver")
    parser.add_argument("--baudrate", type=int, default=INSPIRE_BAUDRATE)
    parser.add_argument("--device-id", type=int, default=INSPIRE_DEVICE_ID)
    parser.add_argument("--byte-order", choices=[b.value for b in R.ByteOrder], default=R.ByteOrder.LOW_FIRST.value)
    parser.add_argument("--travel-time", type=float, default=1.0, help="seconds for 0..1000 at speed 1000")
    parser.add_argument("--contact", type=_parse_contacts, default=None,
                        help="object contact angle per DoF, e.g. 600,600,600,600,none,none")
    parser.add_argument("--log-level", default="WARNING")
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper())

    def fail(message: str) -> int:  # expected start-up errors: one line, no traceback
        print(f"{_PROG}: {message}", file=sys.stderr, flush=True)
        return 2

    tcp = not (args.rtu_pty or args.rtu)
    if tcp:
        if not 0 <= args.port <= 65535:
            return fail(f"port {args.port} is out of range 0-65535 (0 = any free port)")
        if args.port != 0 and (problem := _tcp_listen_problem(args.host, args.port)):
            return fail(problem)
    elif args.rtu and not args.rtu_pty and not os.path.exists(args.rtu):
        return fail(f"no such serial device {args.rtu}")
    pair = None
    transport, serial_port = "tcp", ""
    if args.rtu_pty:
        from hardware.inspire.virtual_serial import VirtualSerialPair

        pair = VirtualSerialPair().start()
        transport, serial_port = "rtu", pair.port_a
    elif args.rtu:
        transport, serial_port = "rtu", args.rtu
    # pymodbus logs its own warning on a failed listen; fail() says it in one line (unless a verbose log is asked)
    pymodbus_log = logging.getLogger("pymodbus")
    saved_level = pymodbus_log.level
    if logging.getLogger().getEffectiveLevel() >= logging.WARNING:
        pymodbus_log.setLevel(logging.CRITICAL)
    try:
        cfg = InspireEmulatorConfig(
            transport=transport, host=args.host, port=args.port, serial_port=serial_port, baudrate=args.baudrate,
            device_id=args.device_id, byte_order=args.byte_order, full_travel_time_s=args.travel_time,
            contact_angles=args.contact or (None,) * HAND_DOF)
        emu = InspireHandEmulator(cfg).start()
    except (ValueError, RuntimeError) as exc:
        if pair is not None:
            pair.close()
        if isinstance(exc, ValueError):
            return fail(str(exc).removeprefix("invalid InspireEmulatorConfig: "))
        # e.g. the port was taken between the check above and the listen, or the serial device cannot be opened
        problem = _tcp_listen_problem(args.host, args.port) if tcp and args.port else None
        return fail(problem or str(exc))
    finally:
        pymodbus_log.setLevel(saved_level)
    if pair is not None:
        print(f"Inspire emulator: Modbus RTU device {cfg.device_id}; connect the driver to {pair.port_b}", flush=True)
    elif transport == "rtu":
        print(f"Inspire emulator: Modbus RTU device {cfg.device_id} on {serial_port}", flush=True)
    else:
        print(f"Inspire emulator: Modbus TCP device {cfg.device_id} on {cfg.host}:{emu.port}", flush=True)

    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    try:
        while not stop.wait(0.5):
            pass
    finally:
        emu.stop()
        if pair is not None:
            pair.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
