"""Evaluate generated hand motion against ground truth per split (lab, wild) and print a table.

    python -m training.evaluate_motion --pred PRED.npz --gt GT.npz [--min-displacement 0.01] [--json OUT.json]

File format: training.metrics.load_motion_file; metric definitions: training/metrics.py.
"""
from __future__ import annotations

import argparse
import json

from .metrics import evaluate_files, print_table


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pred", required=True, help="predicted motion npz (ids, domain, joints|motion[, valid])")
    ap.add_argument("--gt", required=True, help="ground-truth motion npz, same format")
    ap.add_argument("--min-displacement", type=float, default=0.01,
                    help="GT wrist displacement [m] below which MDE skips a sequence")
    ap.add_argument("--json", help="also write the results here")
    args = ap.parse_args(argv)
    try:
        results = evaluate_files(args.pred, args.gt, args.min_displacement)
    except ValueError as exc:
        print(f"error: {exc}")
        return 2
    print_table(results)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
