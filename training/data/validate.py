"""Check a dataset in the training/data format: ``python -m training.data.validate DIR [--read-frames]``."""
from __future__ import annotations

from .format import DataFormatError, validate_dataset


def main(argv=None) -> int:
    import argparse

    ap = argparse.ArgumentParser(description="Validate a hand-video dataset in the training/data format.")
    ap.add_argument("root")
    ap.add_argument("--read-frames", action="store_true", help="also decode every chunk-boundary frame")
    args = ap.parse_args(argv)
    try:
        recs = validate_dataset(args.root, read_frames=args.read_frames)
    except DataFormatError as exc:
        print(f"INVALID: {exc}")
        return 1
    n_m = sum(r.has_motion for r in recs)
    print(f"OK: {len(recs)} samples ({n_m} with motion, {len(recs) - n_m} video-only)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
