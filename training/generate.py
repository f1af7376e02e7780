"""Hand-motion generation with Masked Chunk Prediction (paper A.3, "Inference with MCP").

Sequences come from the pretraining sequence builder (training.pretrain.data.SequenceBuilder), so generation
conditions a chunk exactly as pretraining trained it::

    <img> v_0 </img>  <latent> x n (LSP state latents of (v_0, v_0), target hand's head)  instruction
    <mot>{wrist}{finger}</mot> ...  (every earlier chunk, both hands interleaved L0 R0 L1 R1 ..., given)
    <mot>{128 x <mot_mask>}</mot>   (the target)

where v_0 is the first frame of the window. The chunks attend bidirectionally inside themselves and causally
across (jala_policy.backbone.chunk_attention_mask), so revealed tokens inform every still-masked position.

Decoding the target chunk (:func:`decode_chunk`):

1. The target chunk starts fully masked. Each *pass* runs the backbone once and reads ``motion_logits`` at the
   target's 128 positions, constrained to what a position can hold: wrist positions only wrist codes, finger
   positions only finger codes, and a position of quantizer depth q only codes of depth q (the tokenizer's
   factorisation, training/tokenizer/config.py).
2. Pass ensembling (``average_passes``): for each still-masked position the softmax distributions of all passes
   so far are averaged; a position's confidence is the maximum averaged probability.
3. The ``ceil(reveal_ratio * 128)`` (~5%: 7 tokens) most confident still-masked positions are revealed with
   their most probable code (or a sample at ``temperature`` > 0) and fed back as tokens in the next pass;
   so a chunk takes ceil(128 / 7) = 19 passes.
4. Round ensembling (``num_rounds`` R): R decodings run in one batch; rounds after the first perturb the reveal
   order with Gumbel noise (``order_noise``) and, with ``temperature`` > 0, sample. Each round's tokens are
   decoded by the motion tokenizer and the motions are averaged (translation: mean; rotations: mean of the
   rot6d rows, re-orthonormalised). With one round the result is that round's decoded motion.

:func:`generate_for_dataset` runs this over a dataset split (teacher-forced history: the earlier chunks of the
window, both hands, as ground-truth tokens) and evaluates with training.metrics; prediction and ground truth
both get their joints from the FK skeleton of their 99-D motion (``joint_source``). :func:`generate_chunk`
decodes after a free-form history. CLI::

    python -m training.generate --policy CKPT_DIR --tokenizer TOK_DIR --data DATASET [--split test]
        [--max-chunks 2] [--rounds 1] [--out-pred pred.npz --out-gt gt.npz]

``--policy tiny`` builds a random tiny policy (pipeline check only; its motion is meaningless).
"""
from __future__ import annotations

import argparse
import math
from dataclasses import dataclass

import numpy as np
import torch

from jala_policy.perceiver import LEFT_HAND, RIGHT_HAND

from .data.hand import HandSkeleton, canonicalize_rot6d
from .metrics import FK_JOINTS
from .pretrain.adapter import token_sample
from .pretrain.data import SequenceBuilder, chunk_order
from .tokenizer.config import MotionTokenizerConfig


@dataclass
class MCPConfig:
    reveal_ratio: float = 0.05  # fraction of the chunk's tokens revealed per pass
    num_rounds: int = 1  # independent decodings, ensembled in motion space
    average_passes: bool = True  # average each masked position's distribution over the passes
    temperature: float = 0.0  # > 0: rounds after the first sample their codes at this temperature (round 0 greedy)
    order_noise: float = 1.0  # Gumbel noise scale on the reveal confidence for rounds after the first
    seed: int = 0

    def __post_init__(self):
        if not 0.0 < self.reveal_ratio <= 1.0:
            raise ValueError(f"reveal_ratio must be in (0, 1], got {self.reveal_ratio}")
        if self.num_rounds < 1:
            raise ValueError("num_rounds must be >= 1")
        if self.temperature < 0 or self.order_noise < 0:
            raise ValueError("temperature and order_noise must be >= 0")


@dataclass
class MCPResult:
    wrist_codes: torch.Tensor  # (R, 64) part codes in [0, 4096) per round
    finger_codes: torch.Tensor  # (R, 64)
    ids: torch.Tensor  # (R, 130) backbone ids <mot>{wrist}{finger}</mot> per round
    reveal_pass: torch.Tensor  # (R, 128) the pass (0-based) at which each position was revealed
    passes: int
    motion: torch.Tensor | None = None  # (15, 99) ensembled decoded motion (when a tokenizer is given)
    round_motions: torch.Tensor | None = None  # (R, 15, 99)


def _images_tensor(images, num_views: int) -> torch.Tensor:
    if isinstance(images, np.ndarray) and images.ndim == 3:
        images = [images]
    if not isinstance(images, (list, tuple)) or len(images) != num_views:
        raise ValueError(f"expected {num_views} camera image(s)")
    for img in images:
        if not isinstance(img, np.ndarray) or img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3:
            raise ValueError("images must be HxWx3 uint8 RGB numpy arrays")
    if len({img.shape for img in images}) != 1:
        raise ValueError("all camera images must have the same size")
    return torch.from_numpy(np.stack(images)).unsqueeze(0)  # (1, V, H, W, 3)


def _previous_chunks(vocab, previous) -> list[torch.Tensor]:
    """Previous chunks as wrapped backbone ids, one tensor per chunk: from a list of (wrist_codes, finger_codes)
    or a 1-D tensor of wrapped ids."""
    if previous is None:
        return []
    if isinstance(previous, torch.Tensor):
        ids = previous.to(torch.long).flatten().cpu()
        ok = vocab.is_motion_code(ids) | (ids == vocab.mot_start) | (ids == vocab.mot_end)
        if not bool(ok.all()):
            raise ValueError("previous ids must be wrapped motion chunks (<mot>, motion codes, </mot>)")
        if ids.numel() % vocab.chunk_length:
            raise ValueError(f"previous ids must be whole chunks of {vocab.chunk_length} ids")
        return list(ids.split(vocab.chunk_length))
    return [vocab.wrap_chunk(torch.as_tensor(w).cpu(), torch.as_tensor(f).cpu()) for w, f in previous]


def allowed_logit_mask(layout: MotionTokenizerConfig) -> torch.Tensor:
    """bool (2*tokens, 2*codes): target position -> motion_logits columns it may take (wrist | finger)."""
    a = torch.from_numpy(layout.allowed_codes())
    t, c = a.shape
    m = torch.zeros((2 * t, 2 * c), dtype=torch.bool)
    m[:t, :c] = a
    m[t:, c:] = a
    return m


def ensemble_motions(motions: torch.Tensor) -> torch.Tensor:
    """(R, T, 99) -> (T, 99): mean translation, mean rot6d re-orthonormalised."""
    mean = motions.mean(0)
    rots = canonicalize_rot6d(mean[..., :96].reshape(*mean.shape[:-1], 16, 6)).reshape(*mean.shape[:-1], 96)
    return torch.cat([rots.to(mean.dtype), mean[..., 96:]], dim=-1)


@torch.inference_mode()
def generate_chunk(policy, images, instruction: str, previous=None, tokenizer=None, hand: int = RIGHT_HAND,
                   config: MCPConfig | None = None, layout: MotionTokenizerConfig | None = None) -> MCPResult:
    """Decode one motion chunk after a free-form history (see module docstring).

    policy: jala_policy.JalaPolicy; images: HxWx3 uint8 (or one per view), the window's first frame; previous:
    the earlier chunks in sequence order (both hands interleaved, as pretraining lays them out) as
    [(wrist_codes (64,), finger_codes (64,)), ...] or a 1-D tensor of wrapped backbone ids; tokenizer:
    training.tokenizer.MotionTokenizer to decode the tokens (optional); hand: 0 left / 1 right (selects the
    perceiver head); layout: the token factorisation (default: the tokenizer's, else MotionTokenizerConfig())."""
    if not isinstance(instruction, str):
        raise ValueError("instruction must be a string")
    views = policy.config.num_views
    imgs = _images_tensor(images, views)
    vocab = policy.backbone.motion
    builder = SequenceBuilder.for_model(policy.backbone, policy.config, num_views=views)
    ids, body_starts = builder.sequence(instruction, _previous_chunks(vocab, previous) + [vocab.masked_chunk()])
    target = torch.arange(body_starts[-1], body_starts[-1] + builder.tokens_per_chunk)
    return decode_chunk(policy, ids, target, imgs[0], hand, tokenizer, config, layout)


@torch.inference_mode()
def decode_chunk(policy, ids: torch.Tensor, target_positions: torch.Tensor, images: torch.Tensor, hand: int,
                 tokenizer=None, config: MCPConfig | None = None,
                 layout: MotionTokenizerConfig | None = None) -> MCPResult:
    """MCP-decode the fully masked chunk at ``target_positions`` (128 positions) of the 1-D sequence ``ids`` (built
    by training.pretrain.data.SequenceBuilder). images: uint8 (views, H, W, 3), the image blocks' frames; hand:
    the hand head of the state latents (the target chunk's hand)."""
    cfg = config or MCPConfig()
    bb = policy.backbone
    vocab = bb.motion
    layout = layout or (tokenizer.config if tokenizer is not None else MotionTokenizerConfig())
    n_part = vocab.config.tokens_per_part
    if layout.tokens != n_part or layout.codes_per_part != vocab.config.codes_per_part:
        raise ValueError("the tokenizer's factorisation does not match the backbone's motion vocabulary")
    if hand not in (LEFT_HAND, RIGHT_HAND):
        raise ValueError(f"hand must be {LEFT_HAND} (left) or {RIGHT_HAND} (right)")
    pcfg = policy.config
    imgs = images.unsqueeze(0)  # (1, V, H, W, 3)
    dev = policy.device
    r = cfg.num_rounds
    n_tok = 2 * n_part

    # constant parts: image tokens and state latents, computed once
    flat = imgs.reshape(-1, *imgs.shape[2:])
    img_emb = bb.image_tokens(bb.preprocess_images(flat))
    img_emb = img_emb.reshape(1, -1, img_emb.shape[-1]).expand(r, -1, -1).reshape(-1, img_emb.shape[-1])
    latents = None
    if pcfg.perceiver.use_state_tokens:
        feats = policy.texture_encoder(policy._texture_pixels(imgs[:, 0]))
        latents = policy.state_perceiver(feats, feats, hand).expand(r, -1, -1)
    ids = ids.to(torch.long).unsqueeze(0).repeat(r, 1).to(dev)
    attn = torch.ones_like(ids)
    tpos = target_positions.to(dev)
    if tpos.shape != (n_tok,) or not bool((ids[0, tpos] == vocab.mask_id).all()):
        raise ValueError(f"the target positions must be the {n_tok} masked positions of one chunk")

    allowed = allowed_logit_mask(layout).to(dev)
    gen = torch.Generator(device=dev).manual_seed(cfg.seed)
    masked = torch.ones((r, n_tok), dtype=torch.bool, device=dev)
    acc = torch.zeros((r, n_tok, allowed.shape[1]), device=dev)
    count = 0
    reveal_pass = torch.full((r, n_tok), -1, dtype=torch.long, device=dev)
    chosen = torch.zeros((r, n_tok), dtype=torch.long, device=dev)
    k = max(1, math.ceil(cfg.reveal_ratio * n_tok))
    passes = 0
    while bool(masked.any()):
        hidden = bb(ids, attn, None, latents=latents, image_embeds=img_emb)
        logits = bb.motion_logits(hidden[:, tpos]).float().masked_fill(~allowed, float("-inf"))
        probs = logits.softmax(-1)
        if cfg.average_passes:
            acc += probs
            count += 1
            dist = acc / count
        else:
            dist = probs
        conf, best = dist.max(-1)  # (R, 128)
        if cfg.temperature > 0 and r > 1:  # sampled codes for the rounds after the first
            t_logits = (dist.clamp_min(1e-12).log() / cfg.temperature)[1:]
            g = -torch.log(-torch.log(torch.rand(t_logits.shape, generator=gen, device=dev).clamp(1e-9, 1 - 1e-9)))
            best[1:] = (t_logits + g).argmax(-1)
            conf[1:] = dist[1:].gather(-1, best[1:, :, None]).squeeze(-1)
        score = conf.clamp_min(1e-12).log()
        if cfg.order_noise > 0 and r > 1:
            g = -torch.log(-torch.log(torch.rand((r - 1, n_tok), generator=gen, device=dev).clamp(1e-9, 1 - 1e-9)))
            score[1:] = score[1:] + cfg.order_noise * g
        score = score.masked_fill(~masked, float("-inf"))
        n_left = int(masked[0].sum())
        top = score.topk(min(k, n_left), dim=-1).indices  # (R, k)
        rows = torch.arange(r, device=dev)[:, None]
        chosen[rows, top] = best[rows, top]
        masked[rows, top] = False
        reveal_pass[rows, top] = passes
        ids[rows, tpos[top]] = vocab.first_code_id + best[rows, top]
        passes += 1

    c = vocab.config.codes_per_part
    wrist, finger = chosen[:, :n_part].cpu(), chosen[:, n_part:].cpu() - c
    out = MCPResult(wrist_codes=wrist, finger_codes=finger, ids=vocab.wrap_chunk(wrist, finger),
                    reveal_pass=reveal_pass.cpu(), passes=passes)
    if tokenizer is not None:
        motions = tokenizer.decode(wrist.to(tokenizer.mean.device), finger.to(tokenizer.mean.device)).cpu()
        out.round_motions = motions
        out.motion = ensemble_motions(motions) if r > 1 else motions[0]
    return out


# ------------------------------------------------------------------------------------------- evaluation
@torch.inference_mode()
def generate_for_dataset(policy, tokenizer, dataset, *, max_chunks: int | None = None,
                         config: MCPConfig | None = None, progress: bool = False) -> tuple[dict, dict]:
    """Generate every fully annotated (sample, time step, hand) chunk of a HandVideoDataset's motion samples, each
    from ``SequenceBuilder.generation_window`` of the sample's token sample (training.pretrain.adapter): the
    window's first frame, the target hand's state latents, and every earlier chunk of both hands as ground-truth
    tokens. ``max_chunks`` limits the time steps generated per sample window.

    Returns (pred, gt) dicts in the training.metrics.load_motion_file layout (ids, domain, joints (N, 15, 21, 3),
    valid, motion, hand, joint_source), ready for training.metrics.evaluate_motion or np.savez. Both sides' joints
    come from the FK skeleton of their motion, never from joints the dataset stores (e.g. MANO), so MPJPE and MWTE
    hold no skeleton mismatch."""
    if policy.config.num_views != 1:
        raise ValueError(f"hand videos have one view; this policy takes {policy.config.num_views}")
    builder = SequenceBuilder.for_model(policy.backbone, policy.config)
    rows = {"ids": [], "domain": [], "hand": [], "pred": [], "gt": []}
    indices = dataset.motion_indices
    it = indices
    if progress:
        from tqdm import tqdm
        it = tqdm(indices, desc="generating")
    for i in it:
        item = dataset[i]
        sample = token_sample(item, i, tokenizer)
        if not sample["has_motion"]:  # no fully annotated chunk
            continue
        for k, (t, h) in enumerate(chunk_order(sample["hand_mask"])):
            if max_chunks is not None and t >= max_chunks:
                break
            window = builder.generation_window(sample, k)
            res = decode_chunk(policy, window["input_ids"], window["target_positions"], window["image"][None],
                               window["state_hand"], tokenizer, config)
            rows["ids"].append(f"{item['id']}/{'LR'[h]}/{t}")
            rows["domain"].append(item["domain"])
            rows["hand"].append(h)
            rows["pred"].append(res.motion.numpy())
            rows["gt"].append(np.asarray(item["motion"][h, t]))
    if not rows["ids"]:
        raise ValueError("the dataset has no fully annotated motion chunk to generate")
    skel = (HandSkeleton(hand="left"), HandSkeleton(hand="right"))
    hands = np.array(rows["hand"])
    common = {"ids": np.array(rows["ids"]), "domain": np.array(rows["domain"]), "hand": hands,
              "valid": np.ones((len(hands), len(rows["gt"][0])), dtype=bool), "joint_source": np.array(FK_JOINTS)}
    out = []
    for motions in (np.stack(rows["pred"]), np.stack(rows["gt"])):
        joints = np.stack([skel[h].joints(m.astype(np.float64)) for h, m in zip(hands, motions)])
        out.append({**common, "motion": motions, "joints": joints.astype(np.float32)})
    return out[0], out[1]


def main(argv=None) -> int:
    from jala_policy import JalaPolicy, JalaPolicyConfig

    from .data.dataset import DataConfig, HandVideoDataset
    from .metrics import evaluate_motion, print_table
    from .tokenizer.model import MotionTokenizer

    ap = argparse.ArgumentParser(description="Generate hand motion with MCP over a dataset split and evaluate it.")
    ap.add_argument("--policy", required=True, help="JalaPolicy checkpoint directory, or 'tiny' (random weights)")
    ap.add_argument("--tokenizer", required=True, help="motion tokenizer directory")
    ap.add_argument("--data", required=True)
    ap.add_argument("--split", default="test", choices=("train", "val", "test"))
    ap.add_argument("--max-chunks", type=int, default=2, help="chunks per sample (each costs ~19 passes)")
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--reveal-ratio", type=float, default=0.05)
    ap.add_argument("--device", default=None)
    ap.add_argument("--out-pred")
    ap.add_argument("--out-gt")
    args = ap.parse_args(argv)
    if args.policy == "tiny":
        policy = JalaPolicy.build(JalaPolicyConfig.from_preset("tiny"), device=args.device or "cpu")
    else:
        policy = JalaPolicy.from_pretrained(args.policy, device=args.device)
    tok = MotionTokenizer.load(args.tokenizer, map_location=policy.device)
    size = policy.backbone.image_size
    ds = HandVideoDataset(DataConfig(root=args.data, image_size=(size, size), splits=(args.split,),
                                     max_chunks=args.max_chunks))
    pred, gt = generate_for_dataset(policy, tok, ds, max_chunks=args.max_chunks, progress=True,
                                    config=MCPConfig(reveal_ratio=args.reveal_ratio, num_rounds=args.rounds))
    if args.out_pred:
        np.savez(args.out_pred, **pred)
    if args.out_gt:
        np.savez(args.out_gt, **gt)
    print_table(evaluate_motion(pred["joints"], gt["joints"], gt["domain"], gt["valid"], joint_source=FK_JOINTS),
                title=f"MCP hand motion generation ({args.split})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
