"""CLI: ``python -m training.pretrain --preset tiny`` or ``--config cfg.yaml`` (torchrun for several ranks)."""
from __future__ import annotations

import argparse
import sys

from jala_policy.config import ConfigError


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m training.pretrain", description=__doc__)
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--config", help="PretrainConfig YAML file")
    src.add_argument("--preset", choices=("tiny", "paper"), help="built-in preset (tiny: CPU, synthetic data)")
    ap.add_argument("--output-dir", help="override run.output_dir")
    ap.add_argument("--max-steps", type=int, help="override run.max_steps")
    ap.add_argument("--resume", help="'auto' (default: latest checkpoint in output_dir), a checkpoint path, "
                                     "or 'none' to start fresh")
    ap.add_argument("--data-root", help="train on a training.data dataset directory (data.source = jala)")
    ap.add_argument("--device", choices=("auto", "cpu", "cuda"))
    ap.add_argument("--export-policy", action="store_true",
                    help="after training, write a JalaPolicy directory (backbone + LSP, fresh action head) to "
                         "OUTPUT_DIR/policy for post-training")
    ap.add_argument("--dump-config", action="store_true", help="print the resolved config as YAML and exit")
    args = ap.parse_args(argv)

    from .config import PretrainConfig
    try:
        cfg = PretrainConfig.load(args.config) if args.config else PretrainConfig.from_preset(args.preset)
        overrides = {"run": {}, "data": {}}
        if args.output_dir:
            overrides["run"]["output_dir"] = args.output_dir
        if args.max_steps:
            overrides["run"]["max_steps"] = args.max_steps
        if args.resume:
            overrides["run"]["resume"] = None if args.resume.lower() == "none" else args.resume
        if args.device:
            overrides["run"]["device"] = args.device
        if args.data_root:
            overrides["data"].update(source="jala", root=args.data_root)
        cfg = PretrainConfig.from_dict(overrides, base=cfg)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.dump_config:
        import yaml
        from .config import _plain
        print(yaml.safe_dump(_plain(cfg.to_dict()), sort_keys=False))
        return 0

    from .. import distributed as tdist
    from .trainer import PretrainTrainer, resolve_device
    info = tdist.init_distributed(resolve_device(cfg.run.device).type)
    try:
        try:
            trainer = PretrainTrainer(cfg)
        except (ConfigError, FileNotFoundError) as exc:  # incl. MissingWeightsError, a missing dataset / tokenizer
            print(f"error: {exc}", file=sys.stderr)
            return 2
        if info.is_main:
            print(f"pretraining: {trainer.total_steps} steps, global batch {cfg.optim.global_batch_size} = "
                  f"{info.world_size} rank(s) x {trainer.per_device} x {trainer.accum} accumulation, "
                  f"device {trainer.device}, starting at step {trainer.step}", flush=True)
        try:
            trainer.train()
        except KeyboardInterrupt:
            if info.is_main:
                from .checkpoint import latest_checkpoint
                print(f"\ninterrupted at step {trainer.step}; the last complete checkpoint is "
                      f"{latest_checkpoint(trainer.ckpt_dir)} (resume with the same command)", file=sys.stderr)
            return 130
        finally:
            trainer.close()
        if info.is_main:
            last = trainer.history[-1] if trainer.history else None
            if last is None:
                print(f"nothing to do: the run in {trainer.output_dir} is already at step {trainer.step} of "
                      f"{trainer.total_steps} (use --resume none or another --output-dir to start over)")
            else:
                print(f"done: step {trainer.step}, loss {last['loss']:.4f} (mcp {last['mcp']:.4f}, align "
                      f"{last['align']:.4f}); checkpoints in {trainer.ckpt_dir}", flush=True)
            if args.export_policy:
                from .export import export_policy
                out = export_policy(trainer.model, trainer.output_dir / "policy")
                print(f"policy written to {out}")
    finally:
        tdist.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
