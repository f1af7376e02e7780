"""Token-level pretraining data: the sample format, a synthetic generator, sequence building and the sampler.

A *token sample* (what the sequence builder consumes) is a dict::

    index        int                       position in the dataset
    frames       uint8 (T + 1, H, W, 3)     frames at the chunk boundaries v_0 .. v_T
    instruction  str
    hand_mask    bool (T, 2)                which hand [left, right] has a chunk at time step t
    wrist_codes  int (T, 2, 64) or None     GRVQ codes 0..4095 per time step and hand (None: video-only)
    finger_codes int (T, 2, 64) or None
    has_motion   bool                       False for in-the-wild video-only samples
    domain       "lab" | "wild"

``training.pretrain.adapter.token_sample`` turns a sample of the on-disk dataset (training.data) into this
format; ``SyntheticTokenDataset`` generates such samples directly (tests, the tiny preset).

The sequence of one sample (A.1, A.3)::

    <img> <IMG_CONTEXT> x n </img>  <latent> x n_latents  instruction  <mot>{64 wrist}{64 finger}</mot> ...

with the chunks interleaved left/right along time (L0 R0 L1 R1 ...), masked by the hybrid scheme. The image is
the window's first frame v_0; the latents are the LSP state latents of (v_0, v_0) through the target chunk's hand
head. ``SequenceBuilder`` is the one place this layout is built: for training (``build``) and for MCP generation
(``generation_window``, used by training/generate.py), whose sequence is the training sequence cut after a fully
masked target chunk (chunks after it cannot change the target: attention across chunks is causal).
"""
from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset, DistributedSampler

from jala_policy.backbone import prompt_ids
from jala_policy.config import JalaPolicyConfig
from jala_policy.motion_tokens import MotionVocabulary

from .config import MaskingConfig
from .masking import hybrid_masks, sample_rng

LEFT, RIGHT = 0, 1
IGNORE_INDEX = -100

_VERBS = ("pick up", "push", "rotate", "open", "close", "wipe", "pour", "lift")
_OBJECTS = ("the cup", "the drawer", "the sponge", "the bottle", "the lid", "the box", "the bowl", "the phone")


class SyntheticTokenDataset(Dataset):
    """Deterministic synthetic token samples (clearly not real data): a coloured square moves between the
    boundary frames; its per-chunk displacement sets the wrist codes, the instruction sets the finger codes,
    so both losses have something learnable. ``video_only_fraction`` of the samples are 'wild' video-only."""

    def __init__(self, num_samples: int, *, num_time_chunks: int = 2, image_hw: tuple[int, int] = (64, 64),
                 video_only_fraction: float = 0.3, tokens_per_part: int = 64, codes_per_part: int = 4096,
                 seed: int = 0):
        self.num_samples = int(num_samples)
        self.num_time_chunks = int(num_time_chunks)
        self.image_hw = tuple(image_hw)
        self.video_only_fraction = float(video_only_fraction)
        self.tokens_per_part = int(tokens_per_part)
        self.codes_per_part = int(codes_per_part)
        self.seed = int(seed)

    def __len__(self) -> int:
        return self.num_samples

    def __getitem__(self, index: int) -> dict:
        if not 0 <= index < self.num_samples:
            raise IndexError(index)
        rng = np.random.default_rng([self.seed, int(index), 0x53594E])
        t_chunks, (h, w) = self.num_time_chunks, self.image_hw
        verb, obj = int(rng.integers(len(_VERBS))), int(rng.integers(len(_OBJECTS)))
        has_motion = bool(rng.random() >= self.video_only_fraction)
        hands = int(rng.integers(3))  # 0 left only, 1 right only, 2 both
        hand_mask = np.zeros((t_chunks, 2), dtype=bool)
        hand_mask[:, LEFT] = hands in (0, 2)
        hand_mask[:, RIGHT] = hands in (1, 2)
        # frames: a square moving by a per-step displacement over a background coloured by the object
        size = max(4, min(h, w) // 6)
        pos = rng.uniform([0, 0], [h - size, w - size])
        disp = rng.integers(-2, 3, size=(t_chunks, 2)) * max(1, min(h, w) // 16)
        bg = np.array([40 + 25 * obj, 200 - 20 * obj, 90 + 10 * verb], dtype=np.uint8)
        frames = np.empty((t_chunks + 1, h, w, 3), dtype=np.uint8)
        for t in range(t_chunks + 1):
            img = np.broadcast_to(bg, (h, w, 3)).copy()
            img += rng.integers(0, 8, size=(h, w, 3), dtype=np.uint8)
            y, x = int(pos[0]), int(pos[1])
            img[y:y + size, x:x + size] = (250, 250, 250)
            frames[t] = img
            if t < t_chunks:
                pos = np.clip(pos + disp[t], 0, [h - size, w - size])
        sample = {"index": int(index), "frames": frames, "instruction": f"{_VERBS[verb]} {_OBJECTS[obj]}",
                  "hand_mask": hand_mask, "has_motion": has_motion, "domain": "lab" if has_motion else "wild",
                  "wrist_codes": None, "finger_codes": None}
        if has_motion:
            n, k = self.tokens_per_part, self.codes_per_part
            base_w = ((disp[:, 0] + 8) * 17 + (disp[:, 1] + 8)) % k                       # (T,)
            wrist = (base_w[:, None, None] * 31 + np.arange(n)[None, None, :] * 7
                     + np.array([0, 1])[None, :, None] * 1000) % k
            finger = ((verb * 8 + obj) * 53 + np.arange(n)[None, None, :] * 3
                      + np.array([0, 1])[None, :, None] * 500 + np.arange(t_chunks)[:, None, None]) % k
            noise = rng.random((t_chunks, 2, n)) < 0.05
            wrist = np.where(noise, rng.integers(k, size=wrist.shape), wrist)
            sample["wrist_codes"] = wrist.astype(np.int64)
            sample["finger_codes"] = finger.astype(np.int64)
        return sample


def chunk_order(hand_mask: np.ndarray) -> list[tuple[int, int]]:
    """(time step, hand) of each chunk in sequence order: L0 R0 L1 R1 ..., absent hands skipped."""
    hand_mask = np.asarray(hand_mask, dtype=bool)
    if hand_mask.ndim != 2 or hand_mask.shape[1] != 2:
        raise ValueError(f"hand_mask must be (T, 2), got {hand_mask.shape}")
    return [(t, hand) for t in range(hand_mask.shape[0]) for hand in (LEFT, RIGHT) if hand_mask[t, hand]]


class SequenceBuilder:
    """Token sample -> token sequence, for training (``build``) and MCP generation (``generation_window``).
    Picklable (DataLoader workers)."""

    def __init__(self, vocab: MotionVocabulary, tokenizer, num_image_tokens: int, num_latents: int,
                 masking: MaskingConfig, *, align_chunks: str = "target", seed: int = 0,
                 prompt_template: str = "{instruction}", num_views: int = 1):
        self.vocab = vocab
        self.tokenizer = tokenizer
        self.num_image_tokens = int(num_image_tokens)
        self.num_latents = int(num_latents)
        self.masking = masking
        self.align_chunks = align_chunks
        self.seed = int(seed)
        self.prompt_template = prompt_template
        self.num_views = int(num_views)

    @classmethod
    def for_model(cls, backbone, config: JalaPolicyConfig, masking: MaskingConfig | None = None,
                  **kwargs) -> "SequenceBuilder":
        """The builder of a JalaBackbone and its JalaPolicyConfig (``<latent>`` slots when LSP state tokens are on)."""
        n_lat = config.perceiver.num_latents if config.perceiver.use_state_tokens else 0
        return cls(backbone.motion, backbone.tokenizer, backbone.num_image_tokens, n_lat, masking or MaskingConfig(),
                   prompt_template=config.prompt_template, **kwargs)

    @property
    def tokens_per_chunk(self) -> int:
        return 2 * self.vocab.config.tokens_per_part

    def prompt_ids(self, instruction: str) -> torch.Tensor:
        return prompt_ids(self.tokenizer, self.prompt_template.format(instruction=instruction),
                          num_image_tokens=self.num_image_tokens, num_views=self.num_views,
                          latent_id=self.vocab.latent_id, num_latents=self.num_latents)

    def sequence(self, instruction: str, chunks: Sequence[torch.Tensor]) -> tuple[torch.Tensor, list[int]]:
        """Prompt followed by the wrapped chunks: (ids, position of each chunk's first wrist token)."""
        prompt = self.prompt_ids(instruction)
        body_starts, pos = [], prompt.numel()
        for chunk in chunks:
            body_starts.append(pos + 1)
            pos += chunk.numel()
        return torch.cat([prompt, *chunks]), body_starts

    def _order_and_frames(self, sample: dict) -> tuple[list[tuple[int, int]], np.ndarray]:
        order = chunk_order(sample["hand_mask"])
        if not order:
            raise ValueError(f"sample {sample.get('index')} has no motion chunk (hand_mask is all False)")
        frames = np.asarray(sample["frames"])
        t_steps = np.asarray(sample["hand_mask"]).shape[0]
        if frames.ndim != 4 or frames.shape[0] != t_steps + 1 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
            raise ValueError(f"sample {sample.get('index')}: frames must be uint8 (T + 1 = {t_steps + 1}, H, W, 3), "
                             f"got {frames.dtype} {frames.shape}")
        return order, frames

    def _chunk(self, sample: dict, t: int, hand: int) -> torch.Tensor:
        """The sample's chunk (t, hand) with its codes, or a fully masked one for video-only samples."""
        if not sample["has_motion"]:
            return self.vocab.masked_chunk()
        return self.vocab.wrap_chunk(np.asarray(sample["wrist_codes"])[t, hand],
                                     np.asarray(sample["finger_codes"])[t, hand])

    def build(self, sample: dict, epoch: int = 0) -> dict:
        order, frames = self._order_and_frames(sample)
        has_motion = bool(sample["has_motion"])
        n = self.tokens_per_chunk
        rng = sample_rng(self.seed, epoch, sample["index"])
        cm = hybrid_masks(len(order), n, has_motion, self.masking, rng)
        chunks, labels = [], []
        for (t, hand), mask in zip(order, cm.masks):
            chunk = self._chunk(sample, t, hand)
            lab = torch.full_like(chunk, IGNORE_INDEX)
            if has_motion:
                m = torch.from_numpy(mask)
                body = chunk[1:-1]
                lab[1:-1] = torch.where(m, body - self.vocab.first_code_id, IGNORE_INDEX)
                chunk[1:-1] = torch.where(m, self.vocab.mask_id, body)
            chunks.append(chunk)
            labels.append(lab)
        ids, body_starts = self.sequence(sample["instruction"], chunks)
        prompt_len = ids.numel() - sum(c.numel() for c in chunks)
        align = [cm.target] if self.align_chunks == "target" else list(range(cm.target, len(order)))
        return {
            "index": int(sample["index"]),
            "input_ids": ids,
            "labels": torch.cat([torch.full((prompt_len,), IGNORE_INDEX, dtype=torch.long), *labels]),
            "image": torch.from_numpy(np.ascontiguousarray(frames[0])),
            "state_hand": order[cm.target][1],
            "has_motion": has_motion,
            "target_chunk": cm.target,
            "target_ratio": cm.ratio,
            "align_positions": torch.stack([torch.arange(body_starts[i], body_starts[i] + n) for i in align]),
            "align_first": torch.from_numpy(np.stack([frames[order[i][0]] for i in align])),
            "align_second": torch.from_numpy(np.stack([frames[order[i][0] + 1] for i in align])),
            "align_hand": torch.tensor([order[i][1] for i in align], dtype=torch.long),
            "chunk_order": order,
        }

    def generation_window(self, sample: dict, target: int) -> dict:
        """The sequence MCP generation decodes chunk ``target`` (an index into ``chunk_order``) from: exactly the
        training sequence with that chunk as a fully masked target, cut after it. Earlier chunks of both hands keep
        their codes (teacher forcing); image and state hand are the training ones (v_0, the target's hand)."""
        order, frames = self._order_and_frames(sample)
        if not sample["has_motion"]:
            raise ValueError(f"sample {sample.get('index')} is video-only: it has no motion to condition on")
        if not 0 <= target < len(order):
            raise ValueError(f"target chunk {target} outside the sample's {len(order)} chunks")
        chunks = [self._chunk(sample, t, hand) for t, hand in order[:target]] + [self.vocab.masked_chunk()]
        ids, body_starts = self.sequence(sample["instruction"], chunks)
        return {
            "input_ids": ids,
            "image": torch.from_numpy(np.ascontiguousarray(frames[0])),
            "state_hand": order[target][1],
            "target": order[target],
            "target_positions": torch.arange(body_starts[-1], body_starts[-1] + self.tokens_per_chunk),
        }


class MaskedSequenceDataset(Dataset):
    """Wraps a token-sample dataset; keys are (epoch, index) so masks depend on the epoch and the index only.
    ``adapter`` turns the wrapped dataset's items into token samples (identity for token datasets)."""

    def __init__(self, base: Dataset, builder: SequenceBuilder, adapter=None):
        self.base = base
        self.builder = builder
        self.adapter = adapter

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, key) -> dict:
        epoch, index = key if isinstance(key, tuple) else (0, key)
        item = self.base[index]
        sample = self.adapter(item, index) if self.adapter is not None else item
        return self.builder.build(sample, epoch)


def _stack_images(images: Sequence[torch.Tensor]) -> torch.Tensor:
    shapes = {tuple(im.shape) for im in images}
    if len(shapes) == 1:
        return torch.stack(list(images))
    h, w = images[0].shape[-3:-1]
    out = []
    for im in images:
        x = im.reshape(-1, *im.shape[-3:]).permute(0, 3, 1, 2).float()
        x = torch.nn.functional.interpolate(x, size=(h, w), mode="bilinear", antialias=True, align_corners=False)
        out.append(x.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).reshape(*im.shape[:-3], h, w, 3))
    return torch.stack(out)


def collate(items: list[dict], pad_id: int) -> dict:
    """Right-pad a micro-batch of built sequences."""
    length = max(int(it["input_ids"].numel()) for it in items)
    b = len(items)
    ids = torch.full((b, length), pad_id, dtype=torch.long)
    labels = torch.full((b, length), IGNORE_INDEX, dtype=torch.long)
    attn = torch.zeros((b, length), dtype=torch.long)
    for i, it in enumerate(items):
        n = it["input_ids"].numel()
        ids[i, :n] = it["input_ids"]
        labels[i, :n] = it["labels"]
        attn[i, :n] = 1
    align_counts = [it["align_positions"].shape[0] for it in items]
    first = [f for it in items for f in it["align_first"]]
    second = [f for it in items for f in it["align_second"]]
    return {
        "indices": torch.tensor([it["index"] for it in items], dtype=torch.long),
        "input_ids": ids, "attention_mask": attn, "labels": labels,
        "images": _stack_images([it["image"] for it in items]),
        "state_hand": torch.tensor([it["state_hand"] for it in items], dtype=torch.long),
        "has_motion": torch.tensor([it["has_motion"] for it in items], dtype=torch.bool),
        "target_ratio": torch.tensor([it["target_ratio"] for it in items], dtype=torch.float32),
        "align_batch_index": torch.repeat_interleave(torch.arange(b), torch.tensor(align_counts)),
        "align_positions": torch.cat([it["align_positions"] for it in items]),
        "align_first": _stack_images(first),
        "align_second": _stack_images(second),
        "align_hand": torch.cat([it["align_hand"] for it in items]),
    }


class Collator:
    def __init__(self, pad_id: int):
        self.pad_id = int(pad_id)

    def __call__(self, items: list[dict]) -> dict:
        return collate(items, self.pad_id)


class ResumableDistributedSampler(DistributedSampler):
    """DistributedSampler (shuffled per epoch, rank r takes every world-th index) that yields (epoch, index)
    keys and can start part-way through an epoch (``set_start``) for exact resume.

    With global batch G = world * per_rank_batch * accum, the samples of optimiser step s are positions
    [s*G, (s+1)*G) of the epoch's permutation whatever the world size, so one process and N processes see the
    same global batches."""

    def __init__(self, dataset: Dataset, num_replicas: int = 1, rank: int = 0, shuffle: bool = True,
                 seed: int = 0):
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=shuffle, seed=seed, drop_last=True)
        self.start = 0

    def set_start(self, start: int) -> None:
        if start < 0 or start > self.num_samples:
            raise ValueError(f"sampler start {start} outside [0, {self.num_samples}]")
        self.start = int(start)

    def __iter__(self) -> Iterator[tuple[int, int]]:
        indices = list(super().__iter__())
        for i in indices[self.start:]:
            yield (self.epoch, int(i))

    def __len__(self) -> int:
        return self.num_samples - self.start

