"""The InternVL3 vision-language backbone with the motion vocabulary (paper A.1, B.1).

Uses transformers' native ``InternVLForConditionalGeneration``. The backbone builds one token sequence per
sample::

    [<img> <IMG_CONTEXT> x n_img </img>] x views   [<latent> x n_latents]   instruction   <mot> <mot_mask> x 128 </mot>

image features are scattered into the ``<IMG_CONTEXT>`` slots, perceiver latents into the ``<latent>`` slots,
and one forward pass gives hidden states; those at the ``<mot_mask>`` positions are the predictive embeddings.
:func:`prompt_ids` builds the part before the motion chunks for inference, pretraining and generation alike.

Attention (``BackboneConfig.chunk_attention``, default "bidirectional"): a block mask, see
:func:`chunk_attention_mask`. Everything up to a motion chunk is causal; the tokens of one ``<mot>...</mot>``
chunk attend to each other in both directions, so one pass over a fully masked chunk gives every masked
position the whole chunk as context (single-pass predictive embeddings, MCP's reveal passes). The mask is a 4-D
additive float mask, which transformers' Qwen2 passes unchanged to its eager and SDPA attention.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from transformers import (AutoTokenizer, InternVLConfig, InternVLForConditionalGeneration, InternVLVisionConfig,
                          PreTrainedTokenizerFast, Qwen2Config)

from .config import BackboneConfig, ConfigError, MotionVocabConfig
from .motion_tokens import MotionVocabulary

IMAGE_START, IMAGE_CONTEXT, IMAGE_END = "<img>", "<IMG_CONTEXT>", "</img>"
INTERNVL_HF_REPO = "OpenGVLab/InternVL3-2B-hf"
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class MissingWeightsError(FileNotFoundError):
    """A local weights directory is missing or incomplete."""


def internvl_config(preset: str) -> InternVLConfig:
    """The InternVL3 architecture for a preset: real InternVL3-2B sizes, a small one for CPU post-training in
    the simulated world, or a tiny one for tests."""
    if preset == "internvl3-2b":
        vision = InternVLVisionConfig(hidden_size=1024, num_hidden_layers=24, num_attention_heads=16,
                                      intermediate_size=4096, image_size=[448, 448], patch_size=[14, 14],
                                      norm_type="layer_norm", use_qk_norm=False, use_mean_pooling=True)
        text = Qwen2Config(vocab_size=151674, hidden_size=1536, intermediate_size=8960, num_hidden_layers=28,
                           num_attention_heads=12, num_key_value_heads=2, max_position_embeddings=32768,
                           rms_norm_eps=1e-6, tie_word_embeddings=True,
                           rope_parameters={"rope_type": "default", "rope_theta": 1000000.0})
        return InternVLConfig(vision_config=vision, text_config=text, image_token_id=151667, image_seq_length=256,
                              downsample_ratio=0.5)
    if preset == "tiny":
        vision = InternVLVisionConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                                      intermediate_size=64, image_size=[64, 64], patch_size=[4, 4])
        text = Qwen2Config(vocab_size=272, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                           num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=2048,
                           tie_word_embeddings=True)
        # image_token_id is the id of <IMG_CONTEXT> in the byte-level test tokenizer (see byte_tokenizer()).
        return InternVLConfig(vision_config=vision, text_config=text, image_token_id=259, image_seq_length=64,
                              downsample_ratio=0.5)
    if preset == "small":
        # CPU post-training in the simulated world: 96 px images in 8 px patches (12 x 12, pixel-shuffled to 36
        # image tokens, fine enough to see where the objects are), a 4-layer 128-wide language model
        vision = InternVLVisionConfig(hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                                      intermediate_size=128, image_size=[96, 96], patch_size=[8, 8])
        text = Qwen2Config(vocab_size=272, hidden_size=128, intermediate_size=384, num_hidden_layers=4,
                           num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=2048,
                           tie_word_embeddings=True)
        return InternVLConfig(vision_config=vision, text_config=text, image_token_id=259, image_seq_length=36,
                              downsample_ratio=0.5)
    raise ConfigError(f"unknown backbone preset {preset!r}")


def byte_tokenizer() -> PreTrainedTokenizerFast:
    """A byte-level tokenizer (256 byte tokens + InternVL's image specials), for random-weight backbones.

    Ids: bytes 0..255, then <|endoftext|>=256, <img>=257, </img>=258, <IMG_CONTEXT>=259.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers

    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    vocab = {ch: i for i, ch in enumerate(alphabet)}
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|endoftext|>", pad_token="<|endoftext|>")
    fast.add_special_tokens({"additional_special_tokens": [IMAGE_START, IMAGE_END, IMAGE_CONTEXT]})
    ids = fast.convert_tokens_to_ids(["<|endoftext|>", IMAGE_START, IMAGE_END, IMAGE_CONTEXT])
    if ids != [256, 257, 258, 259]:
        raise RuntimeError(f"unexpected byte tokenizer special ids {ids}")
    return fast


def image_features(model: nn.Module, pixel_values: torch.Tensor) -> torch.Tensor:
    """Projected image tokens (N, n_img, hidden) from ``get_image_features``.

    transformers 4.52 returns a tensor; 5.x returns an output object with the projected tokens in
    ``pooler_output``. Both are accepted.
    """
    out = model.get_image_features(pixel_values=pixel_values)
    if isinstance(out, torch.Tensor):
        return out
    pooled = getattr(out, "pooler_output", None)
    if isinstance(pooled, torch.Tensor):
        return pooled
    if isinstance(out, (tuple, list)) and isinstance(out[0], torch.Tensor):
        return out[0]
    raise TypeError(f"unexpected get_image_features return type {type(out).__name__}")


def prompt_ids(tokenizer, text: str, *, num_image_tokens: int, num_views: int, latent_id: int,
               num_latents: int) -> torch.Tensor:
    """Token ids (1-D) of the sequence prefix: ``[<img> <IMG_CONTEXT> x n </img>] x views  <latent> x n  text``."""
    image_block = IMAGE_START + IMAGE_CONTEXT * num_image_tokens + IMAGE_END
    image_ids = tokenizer(image_block * num_views, add_special_tokens=False)["input_ids"]
    text_ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    return torch.cat([torch.tensor(image_ids, dtype=torch.long),
                      torch.full((num_latents,), latent_id, dtype=torch.long),
                      torch.tensor(text_ids, dtype=torch.long)])


def chunk_attention_mask(input_ids: torch.Tensor, attention_mask: torch.Tensor, chunk_start: int, chunk_end: int,
                         dtype: torch.dtype) -> torch.Tensor:
    """Additive block attention mask (B, 1, L, L): 0 where query i may attend to key j, the dtype's minimum elsewhere.

    i attends to j when j is a real (not padding) token and either j <= i (causal) or i and j lie in the same
    motion chunk, ``chunk_start`` (<mot>) through ``chunk_end`` (</mot>) inclusive. Equivalently, j <= reach(i):
    i itself outside chunks, the chunk's ``</mot>`` inside one. Padding must be on the right (every query row then
    keeps at least one key).
    """
    length = input_ids.shape[1]
    pos = torch.arange(length, device=input_ids.device)
    starts = input_ids == chunk_start
    ends = input_ids == chunk_end
    in_chunk = starts.long().cumsum(1) > ends.long().cumsum(1) - ends.long()  # opened, not closed before i
    next_end = torch.where(ends, pos, length - 1).flip(1).cummin(1).values.flip(1)  # first </mot> at or after i
    reach = torch.where(in_chunk, next_end, pos)
    blocked = (pos[None, None, :] > reach[:, :, None]) | ~attention_mask.bool()[:, None, :]
    mask = torch.zeros(blocked.shape, dtype=dtype, device=input_ids.device)
    return mask.masked_fill_(blocked, torch.finfo(dtype).min).unsqueeze(1)


def _check_weights_dir(path: str | os.PathLike) -> Path:
    p = Path(path).expanduser()
    hint = (f"download it once on a machine with network access, e.g. `hf download {INTERNVL_HF_REPO} "
            f"--local-dir {p}`, and point backbone.weights_dir at it")
    if not p.is_dir():
        raise MissingWeightsError(f"InternVL3 weights directory {p} does not exist: {hint}")
    if not (p / "config.json").is_file():
        raise MissingWeightsError(f"{p} has no config.json, so it is not a Hugging Face model directory: {hint}")
    if not any(p.glob("*.safetensors")):
        raise MissingWeightsError(f"{p} has no *.safetensors weight files: {hint}")
    return p


@dataclass
class EncodedPrompt:
    """Everything of one inference sequence (batch 1) that depends on the instruction only, on the backbone's
    device: built once per instruction by :meth:`JalaBackbone.encode_for_inference` and reused while the
    instruction is unchanged (the fast path of ``JalaPolicy.predict``).

    ``token_embeds`` are the input embeddings of the ids (image and latent slots are overwritten per frame),
    ``attention_mask`` the mask the language model takes (the 4-D block mask with bidirectional chunk attention),
    and the ``*_index`` tensors the sequence positions of the image slots, the ``<latent>`` slots and the masked
    motion positions, so filling and reading them needs no boolean masks (no host syncs on CUDA)."""

    instruction: str
    input_ids: torch.Tensor
    token_embeds: torch.Tensor
    attention_mask: torch.Tensor
    image_index: torch.Tensor
    latent_index: torch.Tensor
    predictive_index: torch.Tensor


class JalaBackbone(nn.Module):
    """InternVL3 + motion vocabulary; produces predictive embeddings at masked motion positions."""

    def __init__(self, config: BackboneConfig, motion_config: MotionVocabConfig,
                 model: InternVLForConditionalGeneration, tokenizer):
        super().__init__()
        self.config = config
        self.model = model
        self.tokenizer = tokenizer
        if config.text_vocab_size is None:
            config.text_vocab_size = max(len(tokenizer), int(model.config.text_config.vocab_size))
        text_vocab = config.text_vocab_size
        self.motion = MotionVocabulary(base_id=text_vocab, config=motion_config)
        if model.get_input_embeddings().num_embeddings < self.motion.end_id:
            model.resize_token_embeddings(self.motion.end_id, pad_to_multiple_of=64, mean_resizing=False)
        self.image_token_id = int(model.config.image_token_id)
        self.num_image_tokens = int(model.config.image_seq_length)
        self.image_size = int(model.config.vision_config.image_size[0])
        self.register_buffer("pixel_mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("pixel_std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        if config.freeze_vision:
            self.freeze_vision()
        attn = model.config.text_config._attn_implementation
        if config.chunk_attention == "bidirectional" and attn not in ("eager", "sdpa"):
            raise ConfigError(f"chunk_attention 'bidirectional' needs the eager or sdpa attention of the language "
                              f"model (4-D masks), not {attn!r}")

    # ----------------------------------------------------------------------------------------- building
    @classmethod
    def build(cls, config: BackboneConfig, motion_config: MotionVocabConfig, *, load_weights: bool = True,
              dtype: torch.dtype = torch.float32) -> "JalaBackbone":
        """Build the backbone. ``internvl3-2b`` with ``load_weights`` reads ``config.weights_dir``; otherwise
        the architecture is built with random weights (tiny preset, or real sizes for timing)."""
        if config.preset == "internvl3-2b" and load_weights:
            if not config.weights_dir:
                raise MissingWeightsError(
                    f"backbone preset internvl3-2b needs backbone.weights_dir: a local {INTERNVL_HF_REPO} directory")
            path = _check_weights_dir(config.weights_dir)
            model = InternVLForConditionalGeneration.from_pretrained(path, dtype=dtype)
            tokenizer = AutoTokenizer.from_pretrained(path)
        else:
            tokenizer = byte_tokenizer()
            arch = internvl_config(config.preset)
            arch.image_token_id = tokenizer.convert_tokens_to_ids(IMAGE_CONTEXT)
            model = InternVLForConditionalGeneration(arch).to(dtype)
        return cls(config, motion_config, model, tokenizer)

    def freeze_vision(self, frozen: bool = True) -> None:
        """Freeze the vision tower and the vision-to-language projector (post-training, paper B.1); with
        ``frozen=False`` make them trainable again. ``config.freeze_vision`` follows."""
        for module in (self.model.model.vision_tower, self.model.model.multi_modal_projector):
            for p in module.parameters():
                p.requires_grad_(not frozen)
        self.config.freeze_vision = frozen

    @property
    def hidden_size(self) -> int:
        return int(self.model.config.text_config.hidden_size)

    @property
    def device(self) -> torch.device:
        return self.model.get_input_embeddings().weight.device

    @property
    def dtype(self) -> torch.dtype:
        return self.model.get_input_embeddings().weight.dtype

    # ------------------------------------------------------------------------------------------- inputs
    def preprocess_images(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 (N, H, W, 3) -> normalised float (N, 3, S, S) at the backbone's resolution, on its device."""
        x = images.to(self.device, non_blocking=True).permute(0, 3, 1, 2).float().div_(255.0)
        if x.shape[-2:] != (self.image_size, self.image_size):
            x = nn.functional.interpolate(x, size=(self.image_size, self.image_size), mode="bilinear",
                                          antialias=True, align_corners=False)
        x = (x - self.pixel_mean) / self.pixel_std
        return x.to(self.dtype)

    def encode_prompt(self, instruction: str, num_views: int, num_latents: int,
                      motion_ids: torch.Tensor | None = None) -> torch.Tensor:
        """Token ids of one sample (1-D). ``motion_ids`` defaults to one fully masked chunk."""
        prefix = prompt_ids(self.tokenizer, instruction, num_image_tokens=self.num_image_tokens, num_views=num_views,
                            latent_id=self.motion.latent_id, num_latents=num_latents)
        if motion_ids is None:
            motion_ids = self.motion.masked_chunk()
        return torch.cat([prefix, torch.as_tensor(motion_ids, dtype=torch.long)])

    def collate(self, sequences: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """Right-pad sequences into (B, L) ids and an attention mask."""
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        length = max(int(s.numel()) for s in sequences)
        ids = torch.full((len(sequences), length), pad, dtype=torch.long)
        mask = torch.zeros((len(sequences), length), dtype=torch.long)
        for i, s in enumerate(sequences):
            ids[i, : s.numel()] = s
            mask[i, : s.numel()] = 1
        return ids, mask

    # ------------------------------------------------------------------------------------------ forward
    def image_tokens(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return image_features(self.model.model, pixel_values)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, pixel_values: torch.Tensor | None,
                latents: torch.Tensor | None = None, image_embeds: torch.Tensor | None = None) -> torch.Tensor:
        """Last-layer hidden states (B, L, hidden). ``attention_mask`` (B, L) marks real tokens (right padding);
        with bidirectional chunk attention it becomes the block mask of :func:`chunk_attention_mask`.

        pixel_values: (B * views, 3, S, S) in the order the image blocks appear; latents: (B, n_latents, hidden)
        for the ``<latent>`` slots. ``image_embeds`` may be given instead of pixel values (precomputed).
        """
        input_ids = input_ids.to(self.device)
        attention_mask = attention_mask.to(self.device)
        embeds = self.model.get_input_embeddings()(input_ids)
        image_slots = input_ids == self.image_token_id
        if image_slots.any():
            if image_embeds is None:
                if pixel_values is None:
                    raise ValueError("the sequence has image slots but no pixel values were given")
                image_embeds = self.image_tokens(pixel_values)
            image_embeds = image_embeds.to(embeds.dtype).reshape(-1, embeds.shape[-1])
            if image_embeds.shape[0] != int(image_slots.sum()):
                raise ValueError(f"{int(image_slots.sum())} image slots but {image_embeds.shape[0]} image tokens")
            embeds = embeds.masked_scatter(image_slots.unsqueeze(-1), image_embeds)
        latent_slots = input_ids == self.motion.latent_id
        if latent_slots.any():
            if latents is None:
                raise ValueError("the sequence has <latent> slots but no latents were given")
            lat = latents.to(embeds.dtype).reshape(-1, embeds.shape[-1])
            if lat.shape[0] != int(latent_slots.sum()):
                raise ValueError(f"{int(latent_slots.sum())} latent slots but {lat.shape[0]} latents")
            embeds = embeds.masked_scatter(latent_slots.unsqueeze(-1), lat)
        return self.language_forward(embeds, self.language_mask(input_ids, attention_mask, embeds.dtype))

    def language_mask(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        """The mask the language model takes: the block mask with bidirectional chunk attention, else (B, L)."""
        if self.config.chunk_attention == "bidirectional":
            return chunk_attention_mask(input_ids, attention_mask, self.motion.mot_start, self.motion.mot_end, dtype)
        return attention_mask

    def language_forward(self, embeds: torch.Tensor, language_mask: torch.Tensor) -> torch.Tensor:
        """Last-layer hidden states of the language model over filled input embeddings."""
        out = self.model.model.language_model(inputs_embeds=embeds, attention_mask=language_mask, use_cache=False)
        return out.last_hidden_state

    # ------------------------------------------------------------------------------ cached-prompt inference
    @torch.no_grad()
    def encode_for_inference(self, instruction: str, input_ids: torch.Tensor,
                             attention_mask: torch.Tensor) -> EncodedPrompt:
        """The instruction-only part of one inference sequence (ids and mask of ``collate``, batch 1)."""
        if input_ids.shape[0] != 1:
            raise ValueError("encode_for_inference takes one sequence")
        ids = input_ids.to(self.device)
        mask = attention_mask.to(self.device)
        embeds = self.model.get_input_embeddings()(ids)

        def positions(token_id: int) -> torch.Tensor:
            return torch.nonzero(ids[0] == token_id).flatten()

        return EncodedPrompt(instruction, ids, embeds, self.language_mask(ids, mask, embeds.dtype),
                             positions(self.image_token_id), positions(self.motion.latent_id),
                             positions(self.motion.mask_id))

    def forward_encoded(self, prompt: EncodedPrompt, image_embeds: torch.Tensor | None,
                        latents: torch.Tensor | None) -> torch.Tensor:
        """Predictive embeddings (1, n_masked, hidden) of a cached prompt with this frame's image tokens
        (views, n_img, hidden) and state latents (1, n_latents, hidden): the same sequence and result as
        ``forward`` + ``predictive_embeddings``, filled by index."""
        embeds = prompt.token_embeds.clone()
        if prompt.image_index.numel():
            embeds[:, prompt.image_index] = image_embeds.reshape(1, -1, embeds.shape[-1]).to(embeds.dtype)
        if prompt.latent_index.numel():
            embeds[:, prompt.latent_index] = latents.reshape(1, -1, embeds.shape[-1]).to(embeds.dtype)
        hidden = self.language_forward(embeds, prompt.attention_mask)
        return hidden[:, prompt.predictive_index]

    def motion_logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """Logits over the motion code ids only (… , 2 * codes_per_part) for masked chunk prediction."""
        w = self.model.lm_head.weight[self.motion.first_code_id: self.motion.end_id]
        return hidden @ w.t()

    def masked_positions(self, input_ids: torch.Tensor) -> torch.Tensor:
        return input_ids == self.motion.mask_id

    def predictive_embeddings(self, hidden: torch.Tensor, input_ids: torch.Tensor) -> torch.Tensor:
        """Hidden states at the masked motion positions, (B, n_masked, hidden). Every sample must have the same
        number of masked positions (one fully masked chunk at inference)."""
        mask = self.masked_positions(input_ids.to(hidden.device))
        counts = mask.sum(dim=1)
        if counts.numel() == 0 or not bool((counts == counts[0]).all()) or int(counts[0]) == 0:
            raise ValueError(f"samples have differing or zero masked motion positions: {counts.tolist()}")
        return hidden[mask].reshape(hidden.shape[0], int(counts[0]), hidden.shape[-1])
