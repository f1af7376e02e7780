"""Achievable command+read loop rate of the Inspire RH56 driver against its emulator over loopback Modbus TCP.

    python -m benchmarks.inspire_loop_rate                 # emulator in a separate process (default)
    python -m benchmarks.inspire_loop_rate --in-process    # emulator thread in this process (shares the GIL)
    python -m benchmarks.inspire_loop_rate --json out.json

Prints, per read plan:
* back-to-back cycles with no loop (``rate_hz=0``): one cycle = write ANGLE_SET + read the state; the cycle rate
  and the per-transaction latency p50/p99 (each Modbus request/answer, timed inside the driver);
* the background loop asked for 100/200/500/1000 Hz: the rate it achieved, cycle time p50/p99, overruns.
Also prints the RTU wire time a cycle would take at 115200 baud (computed from frame sizes, not measured: a
pty cable has no baud rate).

Emulator latencies are not the hand's: the real RH56's answer time over TCP or RTU is unknown here.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from embodiment import INSPIRE_BAUDRATE
from hardware.inspire import registers as R
from hardware.inspire.config import InspireHandConfig
from hardware.inspire.driver import InspireHand

REPO = Path(__file__).resolve().parents[1]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _percentiles(xs) -> dict:
    a = np.asarray(xs, dtype=np.float64) * 1e3
    return {"p50_ms": float(np.percentile(a, 50)), "p99_ms": float(np.percentile(a, 99)), "n": int(a.size)}


def back_to_back(port: int, plan: str, seconds: float, serial_port: str | None = None) -> dict:
    tx: list[float] = []
    cycles: list[float] = []
    if serial_port:
        cfg = InspireHandConfig(transport="rtu", serial_port=serial_port, rate_hz=0, read_plan=plan, timeout=1.0)
    else:
        cfg = InspireHandConfig(host="127.0.0.1", port=port, rate_hz=0, read_plan=plan, timeout=1.0)
    with InspireHand(cfg) as h:
        for _ in range(50):  # warm-up
            h.set_angles([500] * 6)
            h.read_state()
        h.on_transaction = lambda what, dt: tx.append(dt)
        rng = np.random.default_rng(0)
        t_end = time.monotonic() + seconds
        while time.monotonic() < t_end:
            target = rng.integers(0, 1001, 6)
            t0 = time.perf_counter()
            h.set_angles(target)
            h.read_state()
            cycles.append(time.perf_counter() - t0)
    return {"plan": plan, "transactions_per_cycle": 1 + len(R.READ_PLANS[plan]),
            "cycle_rate_hz": len(cycles) / sum(cycles), "cycle": _percentiles(cycles), "transaction": _percentiles(tx)}


def background_loop(port: int, plan: str, rate_hz: float, seconds: float) -> dict:
    cfg = InspireHandConfig(host="127.0.0.1", port=port, rate_hz=rate_hz, read_plan=plan, timeout=1.0)
    with InspireHand(cfg) as h:
        h.set_angles([500] * 6)
        time.sleep(seconds)
        st = h.loop_stats()
    return {"plan": plan, "requested_hz": rate_hz, "achieved_hz": st.achieved_rate_hz,
            "cycle_p50_ms": st.cycle_p50_s * 1e3, "cycle_p99_ms": st.cycle_p99_s * 1e3,
            "overruns": st.overruns, "cycles": st.cycles, "failed": st.failed_cycles}


def rtu_wire_time_ms(plan: str, baud: int = INSPIRE_BAUDRATE, gap_s: float = 1.75e-3) -> float:
    """Bytes on the wire for write ANGLE_SET + the plan's reads (RTU frames, 10 bits/byte, 8N1) plus the
    Modbus-over-serial spec's fixed 1.75 ms silent interval (t3.5 above 19200 baud) after each frame.
    Excludes the hand's own reply delay and the USB serial adapter's latency (e.g. its latency timer)."""
    frames = [9 + 2 * R.ANGLE_SET.registers, 8]  # write multiple registers: request, answer
    for span in R.READ_PLANS[plan]:
        frames += [8, 5 + 2 * span.registers]  # read holding registers: request, answer
    return (sum(frames) * 10 / baud + len(frames) * gap_s) * 1e3


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--in-process", action="store_true", help="run the emulator as a thread of this process")
    ap.add_argument("--seconds", type=float, default=3.0, help="duration of each measurement")
    ap.add_argument("--plans", default="contiguous,single,per_block")
    ap.add_argument("--rates", default="100,200,500,1000")
    ap.add_argument("--no-rtu-pty", action="store_true", help="skip the RTU-over-pty measurement")
    ap.add_argument("--json", help="also write the figures to this file")
    args = ap.parse_args(argv)
    plans = [p for p in args.plans.split(",") if p]
    rates = [float(r) for r in args.rates.split(",") if r]

    proc = emu = None
    if args.in_process:
        from hardware.inspire.emulator import InspireEmulatorConfig, InspireHandEmulator

        emu = InspireHandEmulator(InspireEmulatorConfig(port=0)).start()
        port = emu.port
    else:
        port = _free_port()
        env = dict(os.environ, PYTHONPATH=str(REPO))
        proc = subprocess.Popen([sys.executable, "-m", "hardware.inspire.emulator", "--port", str(port)],
                                cwd=REPO, env=env, stdout=subprocess.PIPE, text=True)
        line = proc.stdout.readline()
        if str(port) not in line:
            raise SystemExit(f"emulator did not start: {line!r}")
    results: dict = {"host": platform.node(), "cpus": os.cpu_count(), "python": platform.python_version(),
                     "emulator": "in-process thread" if args.in_process else "separate process",
                     "back_to_back": [], "loop": [], "rtu_wire_ms_115200": {}}
    try:
        print(f"Inspire driver vs emulator ({results['emulator']}), loopback Modbus TCP, {os.cpu_count()} CPUs")
        print("\nBack-to-back cycles (write ANGLE_SET + read state), no loop:")
        print(f"{'plan':<11}{'tx/cycle':>9}{'cycle Hz':>10}{'cycle p50':>11}{'cycle p99':>11}{'tx p50':>9}{'tx p99':>9}")
        for plan in plans:
            r = back_to_back(port, plan, args.seconds)
            results["back_to_back"].append(r)
            print(f"{plan:<11}{r['transactions_per_cycle']:>9}{r['cycle_rate_hz']:>10.0f}"
                  f"{r['cycle']['p50_ms']:>9.2f}ms{r['cycle']['p99_ms']:>9.2f}ms"
                  f"{r['transaction']['p50_ms']:>7.2f}ms{r['transaction']['p99_ms']:>7.2f}ms")
        print("\nBackground loop (InspireHand with rate_hz), plan 'contiguous':")
        print(f"{'asked Hz':>9}{'got Hz':>9}{'cycle p50':>11}{'cycle p99':>11}{'overruns':>10}{'failed':>8}")
        for rate in rates:
            r = background_loop(port, "contiguous", rate, args.seconds)
            results["loop"].append(r)
            print(f"{rate:>9.0f}{r['achieved_hz']:>9.1f}{r['cycle_p50_ms']:>9.2f}ms{r['cycle_p99_ms']:>9.2f}ms"
                  f"{r['overruns']:>10}{r['failed']:>8}")
        if not args.no_rtu_pty:
            print("\nModbus RTU over a pty pair (emulator in a separate process; a pty has no baud rate, so this is "
                  "pymodbus' serial overhead, not 115200-baud wire time):")
            rtu = subprocess.Popen([sys.executable, "-m", "hardware.inspire.emulator", "--rtu-pty"], cwd=REPO,
                                   env=dict(os.environ, PYTHONPATH=str(REPO)), stdout=subprocess.PIPE, text=True)
            try:
                line = rtu.stdout.readline()
                dev = line.rsplit(" ", 1)[-1].strip()
                if not dev.startswith("/dev/"):
                    raise SystemExit(f"RTU emulator did not start: {line!r}")
                r = back_to_back(0, "contiguous", args.seconds, serial_port=dev)
                results["rtu_pty_back_to_back"] = r
                print(f"  contiguous: {r['cycle_rate_hz']:.0f} Hz, cycle p50 {r['cycle']['p50_ms']:.2f} ms "
                      f"p99 {r['cycle']['p99_ms']:.2f} ms, transaction p50 {r['transaction']['p50_ms']:.2f} ms "
                      f"p99 {r['transaction']['p99_ms']:.2f} ms")
            finally:
                rtu.terminate()
                rtu.wait(timeout=10)
        print("\nModbus RTU at 115200 baud, computed wire time per cycle (not measured):")
        for plan in R.READ_PLANS:
            ms = rtu_wire_time_ms(plan)
            results["rtu_wire_ms_115200"][plan] = ms
            print(f"  {plan:<11}{ms:6.2f} ms -> at most {1e3 / ms:5.0f} Hz before the hand's own reply delay")
    finally:
        if emu is not None:
            emu.stop()
        if proc is not None:
            proc.terminate()
            proc.wait(timeout=10)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
