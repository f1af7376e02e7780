"""MotionTokenizer: wrist and finger 1-D conv VQ-VAEs with GroupedResidualVQ (vector-quantize-pytorch).

Public API (stable)::

    tok = MotionTokenizer(MotionTokenizerConfig())          # or .tiny()
    tok.set_normalization(chunks)                           # per-dim mean/std from (N, 15, 99) training chunks
    out = tok(motion)                                       # training: dict(loss, recon, wrist_mse, finger_mse, commit)
    wrist_ids, finger_ids = tok.encode(motion)              # (15, 99) -> (64,), (64,); (B, 15, 99) -> (B, 64) x2
    motion = tok.decode(wrist_ids, finger_ids)              # -> (B, 15, 99) (or (15, 99)), rot6d orthonormalised
    tok.save(dir); tok = MotionTokenizer.load(dir)           # config.json + model.safetensors
    vocab_ids = tok.to_vocab_ids(vocab, wrist_ids, finger_ids)  # <mot>{wrist}{finger}</mot> backbone ids

ids are *part codes* in [0, 4096): map them to backbone token ids with
``jala_policy.motion_tokens.MotionVocabulary.codes_to_ids(codes, part)``; the ordering/factorisation is in
training/tokenizer/config.py. Motion is the 99-D layout of training/data/hand.py (finger = [0:90],
wrist = [90:99]); values are normalised with the stored mean/std before encoding and un-normalised after
decoding, so absolute wrist translations in metres go in and come out.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from safetensors.torch import load_model, save_model
from torch import nn
from vector_quantize_pytorch import GroupedResidualVQ

from ..data.hand import FINGER_DIM, FINGER_SLICE, MOTION_DIM, WRIST_DIM, WRIST_SLICE, canonicalize_rot6d
from .config import MotionTokenizerConfig, TokenizerConfigError

PARTS = ("wrist", "finger")
CONFIG_FILE, WEIGHTS_FILE = "config.json", "model.safetensors"


class _ResBlock(nn.Module):
    def __init__(self, width: int, dilation: int):
        super().__init__()
        self.net = nn.Sequential(nn.ReLU(), nn.Conv1d(width, width, 3, padding=dilation, dilation=dilation),
                                 nn.ReLU(), nn.Conv1d(width, width, 1))

    def forward(self, x):
        return x + self.net(x)


def _resnet1d(width: int, depth: int, growth: int, reverse: bool = False) -> nn.Sequential:
    dil = [growth ** i for i in range(depth)]
    return nn.Sequential(*[_ResBlock(width, d) for d in (dil[::-1] if reverse else dil)])


class PartVQVAE(nn.Module):
    """Encoder (T2M-GPT style), GroupedResidualVQ, decoder for one motion part."""

    def __init__(self, in_dim: int, cfg: MotionTokenizerConfig):
        super().__init__()
        self.cfg = cfg
        w = cfg.width
        enc = [nn.Conv1d(in_dim, w, 3, padding=1), nn.ReLU()]
        for _ in range(cfg.down_t):
            enc += [nn.Conv1d(w, w, 4, stride=2, padding=1), _resnet1d(w, cfg.res_depth, cfg.dilation_growth)]
        enc += [nn.Conv1d(w, cfg.code_dim, 3, padding=1)]
        self.encoder = nn.Sequential(*enc)
        dec = [nn.Conv1d(cfg.code_dim, w, 3, padding=1), nn.ReLU()]
        for _ in range(cfg.down_t):
            dec += [_resnet1d(w, cfg.res_depth, cfg.dilation_growth, reverse=True), nn.Upsample(scale_factor=2),
                    nn.Conv1d(w, w, 3, padding=1)]
        dec += [nn.Conv1d(w, w, 3, padding=1), nn.ReLU(), nn.Conv1d(w, in_dim, 3, padding=1)]
        self.decoder = nn.Sequential(*dec)
        self.quantizer = GroupedResidualVQ(
            dim=cfg.code_dim, groups=cfg.groups, num_quantizers=cfg.num_quantizers, codebook_size=cfg.codebook_size,
            commitment_weight=cfg.commitment_weight, decay=cfg.ema_decay, kmeans_init=cfg.kmeans_init,
            kmeans_iters=10, threshold_ema_dead_code=cfg.dead_code_threshold)

    def encode_latent(self, x: torch.Tensor) -> torch.Tensor:
        """(B, T_pad, D) -> (B, steps, code_dim)"""
        return self.encoder(x.transpose(1, 2)).transpose(1, 2)

    def decode_latent(self, z: torch.Tensor) -> torch.Tensor:
        """(B, steps, code_dim) -> (B, T_pad, D)"""
        return self.decoder(z.transpose(1, 2)).transpose(1, 2)

    def forward(self, x: torch.Tensor, quantize: bool = True):
        z = self.encode_latent(x)
        if not quantize:  # plain auto-encoder (quantiser warm-up)
            return self.decode_latent(z), None, z.new_zeros(())
        zq, idx, commit = self.quantizer(z)
        return self.decode_latent(zq), idx, commit.sum()

    # ids: (B, 64) in token order (group, step, depth) with depth offsets; indices: (groups, B, steps, Q)
    def indices_to_ids(self, idx: torch.Tensor) -> torch.Tensor:
        b = idx.shape[1]
        offset = torch.arange(self.cfg.num_quantizers, device=idx.device) * self.cfg.codebook_size
        return (idx + offset).permute(1, 0, 2, 3).reshape(b, self.cfg.tokens)

    def ids_to_indices(self, ids: torch.Tensor) -> torch.Tensor:
        c = self.cfg
        x = ids.reshape(ids.shape[0], c.groups, c.latent_steps, c.num_quantizers)
        depth = torch.arange(c.num_quantizers, device=ids.device)
        if bool(((x // c.codebook_size) != depth).any()):
            raise ValueError("motion code ids do not match their positions' quantizer depths (position p of depth "
                             f"q = p % {c.num_quantizers} must hold an id in "
                             f"[q*{c.codebook_size}, (q+1)*{c.codebook_size}))")
        return (x - depth * c.codebook_size).permute(1, 0, 2, 3).contiguous()


class MotionTokenizer(nn.Module):
    def __init__(self, config: MotionTokenizerConfig | None = None):
        super().__init__()
        self.config = config or MotionTokenizerConfig()
        self.wrist = PartVQVAE(WRIST_DIM, self.config)
        self.finger = PartVQVAE(FINGER_DIM, self.config)
        self.register_buffer("mean", torch.zeros(MOTION_DIM))
        self.register_buffer("std", torch.ones(MOTION_DIM))

    # ------------------------------------------------------------------------------------ normalisation
    @torch.no_grad()
    def set_normalization(self, chunks) -> None:
        """Per-dimension mean/std from training motion (..., 99); std floored at 1e-3."""
        x = torch.as_tensor(chunks, dtype=torch.float32).reshape(-1, MOTION_DIM)
        self.mean.copy_(x.mean(0))
        self.std.copy_(x.std(0).clamp_min(1e-3))

    def normalize(self, m: torch.Tensor) -> torch.Tensor:
        return (m - self.mean) / self.std

    def unnormalize(self, m: torch.Tensor) -> torch.Tensor:
        return m * self.std + self.mean

    # ---------------------------------------------------------------------------------------- helpers
    def _prep(self, motion) -> tuple[torch.Tensor, bool]:
        x = torch.as_tensor(motion, dtype=torch.float32, device=self.mean.device)
        single = x.ndim == 2
        if single:
            x = x.unsqueeze(0)
        c = self.config
        if x.ndim != 3 or x.shape[1:] != (c.chunk_frames, MOTION_DIM):
            raise ValueError(f"motion chunks must be ({c.chunk_frames}, {MOTION_DIM}) or (B, {c.chunk_frames}, "
                             f"{MOTION_DIM}), got {tuple(x.shape)}")
        if not bool(torch.isfinite(x).all()):
            raise ValueError("motion chunk contains NaN/inf")
        x = self.normalize(x)
        pad = c.padded_frames - c.chunk_frames
        if pad:
            x = torch.cat([x, x[:, -1:].expand(-1, pad, -1)], dim=1)
        return x, single

    def _finish(self, wrist: torch.Tensor, finger: torch.Tensor, canonical: bool = True) -> torch.Tensor:
        c = self.config
        m = torch.cat([finger, wrist], dim=-1)[:, : c.chunk_frames]  # finger [0:90] | wrist [90:99]
        m = self.unnormalize(m)
        if canonical:
            rots = m[..., :96].reshape(*m.shape[:-1], 16, 6)
            m = torch.cat([canonicalize_rot6d(rots).reshape(*m.shape[:-1], 96), m[..., 96:]], dim=-1)
        return m

    # ------------------------------------------------------------------------------------------ forward
    def forward(self, motion: torch.Tensor, quantize: bool = True) -> dict:
        """Training pass on (B, 15, 99) raw motion: reconstruction loss (normalised space) + commitment.
        ``quantize=False`` bypasses the quantisers (auto-encoder warm-up before the codebooks are k-means
        initialised on the warmed-up encoder's outputs)."""
        x, _ = self._prep(motion)
        rw, _, cw = self.wrist(x[..., WRIST_SLICE], quantize)
        rf, _, cf = self.finger(x[..., FINGER_SLICE], quantize)
        n = self.config.chunk_frames
        wrist_mse = ((rw - x[..., WRIST_SLICE]) ** 2)[:, :n].mean()
        finger_mse = ((rf - x[..., FINGER_SLICE]) ** 2)[:, :n].mean()
        commit = cw + cf
        return {"loss": wrist_mse + finger_mse + commit, "wrist_mse": wrist_mse, "finger_mse": finger_mse,
                "commit": commit, "recon": self._finish(rw, rf, canonical=False)}

    @torch.no_grad()
    def encode(self, motion) -> tuple[torch.Tensor, torch.Tensor]:
        """(15, 99) -> (wrist_ids (64,), finger_ids (64,)); (B, 15, 99) -> (B, 64) each. Part codes in [0, 4096)."""
        x, single = self._prep(motion)
        out = []
        for part, sl in ((self.wrist, WRIST_SLICE), (self.finger, FINGER_SLICE)):
            _, idx, _ = part.quantizer(part.encode_latent(x[..., sl]))
            out.append(part.indices_to_ids(idx))
        return (out[0][0], out[1][0]) if single else (out[0], out[1])

    @torch.no_grad()
    def decode(self, wrist_ids, finger_ids) -> torch.Tensor:
        """Part codes (64,) / (B, 64) -> motion (15, 99) / (B, 15, 99) with orthonormal rot6d."""
        w = torch.as_tensor(wrist_ids, dtype=torch.long, device=self.mean.device)
        f = torch.as_tensor(finger_ids, dtype=torch.long, device=self.mean.device)
        single = w.ndim == 1
        if single:
            w, f = w.unsqueeze(0), f.unsqueeze(0)
        c = self.config
        for name, t in (("wrist", w), ("finger", f)):
            if t.ndim != 2 or t.shape[1] != c.tokens:
                raise ValueError(f"{name} ids must be ({c.tokens},) or (B, {c.tokens}), got {tuple(t.shape)}")
            if t.numel() and (int(t.min()) < 0 or int(t.max()) >= c.codes_per_part):
                raise ValueError(f"{name} ids must lie in [0, {c.codes_per_part})")
        if w.shape[0] != f.shape[0]:
            raise ValueError("wrist and finger ids need the same batch size")
        parts = []
        for part, ids in ((self.wrist, w), (self.finger, f)):
            z = part.quantizer.get_output_from_indices(part.ids_to_indices(ids))
            parts.append(part.decode_latent(z))
        m = self._finish(parts[0], parts[1])
        return m[0] if single else m

    def reconstruct(self, motion) -> torch.Tensor:
        """encode + decode."""
        w, f = self.encode(motion)
        return self.decode(w, f)

    @staticmethod
    def to_vocab_ids(vocab, wrist_ids, finger_ids) -> torch.Tensor:
        """Backbone token ids ``<mot>{wrist}{finger}</mot>`` (130,) or (B, 130) for a MotionVocabulary."""
        return vocab.wrap_chunk(torch.as_tensor(wrist_ids).cpu(), torch.as_tensor(finger_ids).cpu())

    # ------------------------------------------------------------------------------------------ save/load
    def save(self, directory: str | os.PathLike) -> None:
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        (d / CONFIG_FILE).write_text(self.config.to_json())
        save_model(self, str(d / WEIGHTS_FILE))

    @classmethod
    def load(cls, directory: str | os.PathLike, map_location: str | torch.device = "cpu") -> "MotionTokenizer":
        d = Path(directory).expanduser()
        for name in (CONFIG_FILE, WEIGHTS_FILE):
            if not (d / name).is_file():
                raise FileNotFoundError(f"{d} is not a motion tokenizer directory: missing {name}")
        try:
            cfg = MotionTokenizerConfig.from_dict(json.loads((d / CONFIG_FILE).read_text()))
        except json.JSONDecodeError as exc:
            raise TokenizerConfigError(f"{d / CONFIG_FILE} is not valid JSON: {exc}") from exc
        tok = cls(cfg)
        missing, unexpected = load_model(tok, str(d / WEIGHTS_FILE), strict=False, device=str(map_location))
        if missing or unexpected:
            raise TokenizerConfigError(f"{d / WEIGHTS_FILE} does not match config.json: missing {missing[:5]}, "
                                       f"unexpected {unexpected[:5]}")
        tok.to(map_location)
        tok.eval()
        return tok
