"""The thin adapter from the on-disk hand-video dataset (training.data.HandVideoDataset) to token samples.

``token_sample(item, index, tokenizer)`` encodes every fully annotated per-hand 15-frame chunk of a dataset
item with the GRVQ motion tokenizer (training.tokenizer.MotionTokenizer) into 64 wrist + 64 finger codes and
returns the token-sample dict of training.pretrain.data. Items without motion (video-only) or without any fully
annotated chunk become video-only token samples with one chunk per time step on the right-hand stream (there
is no annotation to say which hand acts; the chunks are fully masked, so only the LAP head choice depends on it).
"""
from __future__ import annotations

import numpy as np
import torch

from .config import ConfigError, PretrainConfig
from .data import RIGHT


def _np(x):
    return x.numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


def token_sample(item: dict, index: int, tokenizer) -> dict:
    frames = _np(item["frames"])
    n = int(item["num_chunks"])
    chunk_valid = _np(item["chunk_valid"]).astype(bool)  # (2, n)
    out = {"index": int(index), "frames": np.ascontiguousarray(frames), "instruction": item["instruction"],
           "domain": item.get("domain", "lab"), "wrist_codes": None, "finger_codes": None}
    if item.get("has_motion") and item.get("motion") is not None and chunk_valid.any():
        motion = torch.as_tensor(item["motion"], dtype=torch.float32)  # (2, n, 15, 99)
        wrist, finger = tokenizer.encode(motion[torch.from_numpy(chunk_valid)])
        w = np.zeros((2, n, wrist.shape[-1]), dtype=np.int64)
        f = np.zeros_like(w)
        w[chunk_valid] = wrist.cpu().numpy()
        f[chunk_valid] = finger.cpu().numpy()
        out.update(has_motion=True, hand_mask=chunk_valid.T.copy(), wrist_codes=w.transpose(1, 0, 2).copy(),
                   finger_codes=f.transpose(1, 0, 2).copy())
    else:
        hand_mask = np.zeros((n, 2), dtype=bool)
        hand_mask[:, RIGHT] = True
        out.update(has_motion=False, hand_mask=hand_mask)
    return out


class TokenizingAdapter:
    """Picklable callable (DataLoader workers) wrapping a motion tokenizer."""

    def __init__(self, tokenizer):
        self.tokenizer = tokenizer.eval()

    def __call__(self, item: dict, index: int) -> dict:
        return token_sample(item, index, self.tokenizer)


def load_motion_tokenizer(config: PretrainConfig):
    from training.tokenizer import MotionTokenizer, MotionTokenizerConfig

    path = config.data.tokenizer_checkpoint
    if path:
        tok = MotionTokenizer.load(path)
    else:
        import warnings
        warnings.warn("data.tokenizer_checkpoint is not set: motion chunks are tokenised with an UNTRAINED, seeded "
                      "random tokenizer (plumbing only, not for real pretraining)", stacklevel=2)
        # No trained tokenizer: a seeded random one (identical on every rank), without k-means initialisation so
        # that encoding never changes the codebooks. Only for plumbing runs; real pretraining needs a checkpoint.
        cfg = MotionTokenizerConfig.tiny()
        cfg.kmeans_init = False
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(config.run.seed)
            tok = MotionTokenizer(cfg)
    m = config.model.motion
    if (tok.config.tokens_per_part, tok.config.codes_per_part) != (m.tokens_per_part, m.codes_per_part):
        raise ConfigError(f"motion tokenizer gives {tok.config.tokens_per_part} tokens / {tok.config.codes_per_part} "
                          f"codes per part, the model vocabulary expects {m.tokens_per_part} / {m.codes_per_part}")
    return tok.eval()


def jala_dataset_and_adapter(config: PretrainConfig):
    from training.data import DataConfig as HandDataConfig
    from training.data import HandVideoDataset

    d = config.data
    if not d.root:
        raise ConfigError("data.root is required for data.source 'jala'")
    ds = HandVideoDataset(HandDataConfig(root=d.root, image_size=d.image_hw,
                                         chunk_frames=config.model.motion.chunk_frames, max_chunks=d.max_chunks,
                                         random_window=d.random_window, seed=config.run.seed))
    return ds, TokenizingAdapter(load_motion_tokenizer(config))
