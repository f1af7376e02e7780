"""The rollout report: its figures from what the monitor saw, and its printed form."""
from __future__ import annotations

import json
from typing import TYPE_CHECKING

import numpy as np

from .monitor import published_rate, rate_stats

if TYPE_CHECKING:
    from .graph import GraphArgs
    from .monitor import Monitor

SLIP_WARN_S = 0.2  # simulated seconds the world gave up to the wall clock during a rollout before the report warns


def fill_report(report: dict, monitor: "Monitor", args: GraphArgs, t0: float | None, t1: float,
                 t_run: float) -> None:
    """The report's figures from what the monitor saw (so far, when the rollout ended early)."""
    m = monitor.m
    if args.sim:
        ok, msg = monitor.call_trigger("/jala/sim/completion", timeout=1.0)
        if ok:
            m.completion = json.loads(msg)
    holds = [{"t_s": round(t - t_run, 3), "reason": text[len("HOLD: "):]} for t, text in m.status
             if text.startswith("HOLD")]
    report["holds"] = holds
    report["status_history"] = [{"t_s": round(t - t_run, 3), "status": text} for t, text in m.status]
    report["hold_reasons"] = {dev: d.get("hold_reason", "") for dev, d in (("arm", m.arm_diag), ("hand", m.hand_diag))
                              if d.get("held") == "True"}
    if t0 is None:  # never started
        return
    report.update({
        "cameras": {t: rate_stats(v, t0, t1) for t, v in m.camera_stamps.items()},
        "arm_joint_states": rate_stats(m.arm_state_times, t0, t1)
        | {"published_hz": published_rate(m.arm_published, t0, t1)},
        "hand_joint_states": rate_stats(m.hand_state_times, t0, t1)
        | {"published_hz": published_rate(m.hand_published, t0, t1)},
        "chunks_received": len(m.chunk_latency),
        "latency_ms": {f"p{p}": float(np.percentile(m.chunk_latency, p) * 1e3) if m.chunk_latency
                       else float("nan") for p in (50, 99)},
        "policy_inference_ms": {p: float(m.policy_diag.get(f"inference_{p}_ms", "nan")) for p in ("p50", "p99")},
        "policy_execute_steps": int(m.policy_diag.get("execute_steps", 0)),  # 0: not reported (yet)
        "arm": {k: m.arm_diag.get(k) for k in ("chunks_executed", "chunks_refused", "chunks_skipped_late",
                                                "last_refusal", "waypoints_dropped", "held", "message")},
        "hand": {k: m.hand_diag.get(k) for k in ("chunks_executed", "chunks_refused", "chunks_skipped_late",
                                                 "last_refusal", "commands_sent", "held", "message")},
        "holds_during_rollout": sum(1 for h in holds if h["t_s"] <= t1 - t_run),  # the estop at the end comes after t1
        "completion": m.completion,
    })
    if m.completion and "realtime_slip_s" in m.completion:
        report["realtime_slip_s"] = round(float(m.completion["realtime_slip_s"])
                                          - report.get("realtime_slip_at_start_s", 0.0), 3)
    if m.arm_q:
        q = np.array([s[1] for s in m.arm_q])
        report["arm_motion_rad"] = float(np.abs(q - q[0]).max())


def format_report(r: dict) -> str:
    rec = r.get("recording")
    kind = "recording" if rec is not None else f"{r['duration_s']:.0f} s rollout"
    lines = [f"JALA {r['task']} ({r['mode']}), {kind}"
             + (f" (interrupted by {r['interrupted']})" if r.get("interrupted") else "")]
    if rec:
        lines.append(f"  recorded: {rec.get('saved_this_run', 0)} episode(s) saved this run; the dataset holds "
                     f"{rec.get('episodes_saved', 0)}")
    if "cameras" in r:
        for t, s in r["cameras"].items():
            lines.append(f"  camera {t}: {s['hz']:.1f} Hz")
        for key, label in (("arm_joint_states", "arm joint states"), ("hand_joint_states", "hand joint states")):
            s = r[key]
            lines.append(f"  {label}: published {s.get('published_hz', float('nan')):.1f} Hz by the node; received "
                         f"here {s['hz']:.1f} Hz (period p50 {s['period_p50_ms']:.1f} ms, "
                         f"p99 {s['period_p99_ms']:.1f} ms)")
        lat = r["latency_ms"]
        label = "camera-frame-to-chunk latency" if rec is None else "command stamp-to-chunk latency (teleop)"
        lines.append(f"  {label}: p50 {lat['p50']:.1f} ms, p99 {lat['p99']:.1f} ms "
                     f"({r['chunks_received']} chunks; inference alone p50 {r['policy_inference_ms']['p50']:.1f} ms, "
                     f"p99 {r['policy_inference_ms']['p99']:.1f} ms"
                     + (f"; a new chunk every {r['policy_execute_steps']} actions" if r.get("policy_execute_steps")
                        else "") + ")")
        lines.append(f"  chunks executed: arm {r['arm'].get('chunks_executed')}, "
                     f"hand {r['hand'].get('chunks_executed')}"
                     f" (refused: arm {r['arm'].get('chunks_refused')}, hand {r['hand'].get('chunks_refused')}; "
                     f"past waypoints dropped {r['arm'].get('waypoints_dropped')})")
        for dev in ("arm", "hand"):
            d = r[dev]
            if d.get("last_refusal"):
                lines.append(f"  {dev}: {d.get('chunks_skipped_late')} of {d.get('chunks_refused')} refused chunk(s) "
                             f"skipped as late; last refusal: {d['last_refusal']}")
        if "estop_hold_latency_ms" in r:
            e = r["estop_hold_latency_ms"]
            lines.append(f"  estop -> hold: arm {e['arm']:.1f} ms, hand {e['hand']:.1f} ms after the supervisor's "
                         "detection")
        if "arm_motion_rad" in r:
            lines.append(f"  arm moved up to {r['arm_motion_rad']:.3f} rad from its start")
        lines.append(f"  holds during the rollout: {r['holds_during_rollout']}")
    for h in r.get("holds", []):
        lines.append(f"  HOLD at {h['t_s']:.2f} s: {h['reason']}")
    if r.get("hold_reasons"):
        lines.append("  devices held: " + "; ".join(f"{d} ({why})" for d, why in r["hold_reasons"].items()))
    c = r.get("completion")
    if c is not None:
        c = {k: v for k, v in c.items() if k != "realtime_slip_s"}
        lines.append(f"  completion ratio: {c.get('ratio', float('nan')):.2f}  {json.dumps(c)}")
    if r.get("realtime_slip_s", 0.0) > SLIP_WARN_S:
        lines.append(f"  WARNING: during the rollout the simulated world fell {r['realtime_slip_s']:.2f} s behind the "
                     "wall clock (CPU starved): the arm lagged its chunks, so refusals and holds in this run may be "
                     "the machine's, not the policy's; run on an otherwise idle machine")
    for e in r["errors"]:
        lines.append(f"  ERROR: {e}")
    for w in r.get("stop_warnings", []):
        lines.append(f"  WARNING: {w}")
    return "\n".join(lines)
