"""Show or change how an exported checkpoint is run, without retraining it (its ``config.json``, ``inference``).

    python -m jala_policy.inference_settings runs/wipe_board/policy                       # print the settings
    python -m jala_policy.inference_settings runs/wipe_board/policy --execute-steps 12    # write them
    python -m jala_policy.inference_settings runs/wipe_board/policy --execute-steps default --noise-scale 0.25

``--execute-steps N``: actions of each chunk the runtime executes before the next chunk takes over; the policy
node (parameter ``execute_steps`` 0, its default) and ``python -m evaluation`` (no ``--execute-steps``) then use
it. ``default`` removes it (the runtime's ``embodiment.EXECUTE_STEPS``). ``--noise-scale S``: the flow sampler's
starting noise (``inference.noise_scale``). Find the values by rolling the checkpoint out
(``python -m evaluation.table ... --execute-steps N``) on seeds you do not report, then write them here. The
new config is checked as a whole before ``config.json`` is replaced (atomically), so a bad value changes nothing.
"""
from __future__ import annotations

import argparse
import json
import os
import tempfile
from pathlib import Path

from .config import ConfigError, JalaPolicyConfig, read_json_file

SETTINGS = ("execute_steps", "noise_scale")


def read_settings(checkpoint: str | Path) -> dict:
    """The checkpoint's run-time settings (``SETTINGS``), from its config.json."""
    return {k: getattr(_load(Path(checkpoint)).inference, k) for k in SETTINGS}


def write_settings(checkpoint: str | Path, **changes) -> dict:
    """Set ``changes`` (a subset of ``SETTINGS``; ``execute_steps=None`` removes it) in the checkpoint's
    config.json after validating the whole config; returns the new settings. ConfigError, nothing written, when
    the result is not a valid config."""
    unknown = set(changes) - set(SETTINGS)
    if unknown:
        raise ConfigError(f"not a run-time setting: {', '.join(sorted(unknown))} (settable: {', '.join(SETTINGS)})")
    path = Path(checkpoint) / "config.json"
    raw = _raw(path)
    raw["inference"] = {**raw.get("inference", {}), **changes}
    try:
        cfg = JalaPolicyConfig.from_dict(raw)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    text = cfg.to_json()
    fd, tmp = tempfile.mkstemp(prefix=".config.json.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return {k: getattr(cfg.inference, k) for k in SETTINGS}


def _raw(path: Path) -> dict:
    if not path.is_file():
        raise ConfigError(f"{path.parent} is not a JALA policy checkpoint (no config.json)")
    return read_json_file(path)


def _load(checkpoint: Path) -> JalaPolicyConfig:
    path = checkpoint / "config.json"
    raw = _raw(path)
    try:
        return JalaPolicyConfig.from_dict(raw)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None


def _execute_steps(text: str) -> int | None:
    if text == "default":
        return None
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number or 'default', got {text!r}") from None


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("checkpoint", help="exported JalaPolicy directory (config.json + weights)")
    ap.add_argument("--execute-steps", type=_execute_steps, default=argparse.SUPPRESS,
                    help="actions executed per chunk before the next takes over, or 'default'")
    ap.add_argument("--noise-scale", type=float, default=argparse.SUPPRESS,
                    help="the flow sampler's starting noise scale, in (0, 1]")
    args = vars(ap.parse_args(argv))
    checkpoint = args.pop("checkpoint")
    try:
        before = read_settings(checkpoint)
        after = write_settings(checkpoint, **args) if args else before
    except ConfigError as exc:
        ap.error(str(exc))
    for k in SETTINGS:
        change = f" (was {json.dumps(before[k])})" if before[k] != after[k] else ""
        print(f"{k}: {json.dumps(after[k])}{change}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
