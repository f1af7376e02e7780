"""Compare policies in the simulated world: every policy over tasks x variants x the same N seeds, one run, one
Markdown table of mean Completion Ratio (± std over episodes), then the per-subtask success rates (with the
fraction of episodes a safety stop ended).

    python -m evaluation.table --task water_plant --variants seen unseen \\
        --policy jala=runs/x/policy --policy bc=runs/bc --policy expert --episodes 20 --seed 1000 --json out.json

A policy is ``name=spec`` or a bare spec (named after itself); a spec is what ``python -m evaluation --policy``
takes: ``expert``, a JalaPolicy checkpoint or a ``training.bc_baseline`` directory. Each renders at its own frame
size unless --width/--height are given (``evaluation.simulated.render_size``).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from .policies import PolicySpecError, policy_input_hw
from .simulated import evaluate, execute_steps_arg

TASKS = ["water_plant", "put_three_obj", "wipe_board"]


def parse_policy(text: str) -> tuple[str, str]:
    """'name=spec' -> (name, spec); a bare spec is named after itself (a directory: its last component)."""
    name, sep, spec = text.partition("=")
    if not sep:
        spec = text
        name = "expert" if text == "expert" else Path(text).name or text
    if not name or not spec:
        raise PolicySpecError(f"--policy {text!r}: expected name=spec")
    policy_input_hw(spec)  # its kind and config checked: a one-line error now rather than after other policies ran
    return name, spec


def summarise(name: str, summary) -> dict:
    crs = np.array([e.completion_ratio for e in summary.episodes], dtype=float)
    subtasks = list(summary.episodes[0].subtasks) if summary.episodes else []
    return {"policy": name, "spec": summary.policy, "task": summary.task, "variant": summary.variant,
            "episodes": len(crs), "mean_completion_ratio": float(crs.mean()) if crs.size else 0.0,
            "std_completion_ratio": float(crs.std()) if crs.size else 0.0,
            "success_rate": float(np.mean(crs >= 1.0 - 1e-9)) if crs.size else 0.0,
            "safety_stop_rate": float(np.mean([e.stopped.startswith("safety") for e in summary.episodes]))
            if summary.episodes else 0.0,
            "subtask_success": {k: float(np.mean([e.subtasks.get(k, False) for e in summary.episodes]))
                                for k in subtasks},
            "sampling_seed": summary.sampling_seed, "latency_s": summary.latency_s,
            "execute_steps": summary.execute_steps,
            "seeds": [e.seed for e in summary.episodes],
            "completion_ratios": crs.tolist(),
            "stopped": [e.stopped for e in summary.episodes],
            "ended_at_s": [round(e.sim_seconds, 2) for e in summary.episodes]}  # simulated time of each end


def run_table(tasks: list[str], variants: list[str], policies: list[tuple[str, str]], episodes: int, seed: int,
              *, log=None, **evaluate_kw) -> list[dict]:
    """One row per (policy, task, variant), every row over seeds ``seed .. seed + episodes - 1``."""
    rows = []
    for name, spec in policies:
        for task in tasks:
            for variant in variants:
                summary = evaluate(task, variant, spec, episodes, seed, **evaluate_kw)
                rows.append(summarise(name, summary))
                if log:
                    r = rows[-1]
                    log(f"{name} {task}/{variant}: CR {r['mean_completion_ratio']:.3f} ± "
                        f"{r['std_completion_ratio']:.3f} over {r['episodes']} episodes")
    return rows


def markdown(rows: list[dict]) -> str:
    """Policies as rows, task/variant as columns (mean CR ± std); then one subtask table per task."""
    cols = list(dict.fromkeys((r["task"], r["variant"]) for r in rows))
    names = list(dict.fromkeys(r["policy"] for r in rows))
    cell = {(r["policy"], r["task"], r["variant"]): r for r in rows}
    n = sorted({r["episodes"] for r in rows})
    seeds = rows[0]["seeds"] if rows else []
    out = [f"Mean Completion Ratio ± std over {'/'.join(map(str, n))} episodes"
           + (f" (seeds {seeds[0]}..{seeds[-1]})" if seeds else ""), "",
           "| policy | " + " | ".join(f"{t} / {v}" for t, v in cols) + " |",
           "|---|" + "---:|" * len(cols)]
    for name in names:
        vals = []
        for t, v in cols:
            r = cell.get((name, t, v))
            vals.append(f"{r['mean_completion_ratio']:.3f} ± {r['std_completion_ratio']:.3f}" if r else "")
        out.append(f"| {name} | " + " | ".join(vals) + " |")
    for task in dict.fromkeys(t for t, _ in cols):
        subtasks = list(dict.fromkeys(k for r in rows if r["task"] == task for k in r["subtask_success"]))
        if not subtasks:
            continue
        out += ["", f"Subtask success rate, {task}", "",
                "| policy | variant | " + " | ".join(subtasks)
                + " | all | safety stop | median end (s) | execute steps |",
                "|---|---|" + "---:|" * (len(subtasks) + 4)]
        for r in rows:
            if r["task"] == task:
                out.append(f"| {r['policy']} | {r['variant']} | "
                           + " | ".join(f"{r['subtask_success'].get(k, 0.0):.2f}" for k in subtasks)
                           + f" | {r['success_rate']:.2f} | {r['safety_stop_rate']:.2f}"
                           + f" | {float(np.median(r['ended_at_s'])) if r['ended_at_s'] else 0.0:.1f}"
                           + f" | {r['execute_steps']} |")
    return "\n".join(out)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--task", nargs="+", default=["water_plant"], choices=TASKS)
    ap.add_argument("--variants", nargs="+", default=["seen"], choices=["seen", "unseen"])
    ap.add_argument("--policy", action="append", required=True, help="name=spec or spec (repeatable)")
    ap.add_argument("--episodes", type=int, default=20)
    ap.add_argument("--seed", type=int, default=1000)
    ap.add_argument("--width", type=int, default=None)
    ap.add_argument("--height", type=int, default=None)
    ap.add_argument("--max-seconds", type=float, default=None)
    ap.add_argument("--sampling-seed", type=int, default=0,
                    help="another set of the policies' sampling noise on the same worlds (evaluation.simulated)")
    ap.add_argument("--latency-s", type=float, default=0.0,
                    help="inference latency to play (evaluation.simulated --latency-s; default 0)")
    ap.add_argument("--execute-steps", type=execute_steps_arg, default=None,
                    help="actions executed per chunk before re-planning, for every policy (default: each "
                         "checkpoint's inference.execute_steps, else 8)")
    ap.add_argument("--device", default=None)
    ap.add_argument("--json", default=None, help="also write every row (with per-episode results) to this file")
    ap.add_argument("--no-progress", action="store_true")
    args = ap.parse_args(argv)
    try:
        policies = [parse_policy(p) for p in args.policy]
    except PolicySpecError as exc:
        ap.error(str(exc))
    if len({n for n, _ in policies}) != len(policies):
        ap.error("two policies have the same name: give them names (name=spec)")
    rows = run_table(args.task, args.variants, policies, args.episodes, args.seed,
                     log=lambda m: print(m, file=sys.stderr, flush=True), width=args.width, height=args.height,
                     max_seconds=args.max_seconds, device=args.device, progress=not args.no_progress,
                     sampling_seed=args.sampling_seed, latency_s=args.latency_s, execute_steps=args.execute_steps)
    print(markdown(rows))
    if args.json:
        Path(args.json).write_text(json.dumps({"episodes": args.episodes, "seed": args.seed, "rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
