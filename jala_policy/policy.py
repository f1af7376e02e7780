"""JalaPolicy: backbone + Latent State Perceiver + flow-matching head, with one-call inference.

Checkpoint directory layout (``save_pretrained`` / ``from_pretrained``)::

    config.json                 JalaPolicyConfig
    normalization.json          state/action statistics
    backbone/                   InternVL3 in Hugging Face format (safetensors + config) and its tokenizer
    texture_encoder/            DINOv2 in Hugging Face format
    policy_heads.safetensors    Latent State Perceiver + flow-matching action head
"""
from __future__ import annotations

import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_model, save_model
from torch import nn
from transformers import AutoTokenizer, Dinov2Model, InternVLForConditionalGeneration

from embodiment import ACTION_DIM, ARM_DOF, CHUNK_JOINT_NAMES, HAND_RANGE, action_limits
from jala_runtime.chunk import TimedChunk
from .action_head import FlowMatchingActionHead
from .backbone import EncodedPrompt, JalaBackbone, MissingWeightsError
from .config import ConfigError, InferenceConfig, JalaPolicyConfig, read_json_file
from .fast_inference import CudaGraphEulerSampler, FramePreprocessor, StageTimer
from .normalization import NormalizationStats, PolicyNormalizer
from .perceiver import LEFT_HAND, RIGHT_HAND, LatentPerceiver, TextureEncoder

# FR3 joint position limits [rad] (Franka FR3 datasheet) and the Inspire angle range: the default normalisation
# range of the 13-D robot state/action before statistics of real demonstrations are computed.


class PolicyInputError(ValueError):
    """An observation given to ``predict`` is malformed (wrong image size or type, NaN proprio, ...)."""


def check_camera_views(num_views: int, cameras: Sequence[str]) -> None:
    """Refuse a camera setup whose number of cameras differs from the views the policy was trained on.

    The one check (and message) for every place that feeds a policy: the ROS policy node (its image topics) and
    the simulated evaluation (the task world's cameras). Views are never dropped or duplicated silently."""
    cameras = list(cameras)
    if len(cameras) != int(num_views):
        raise ConfigError(f"the policy takes {num_views} camera view(s) but {len(cameras)} camera(s) are configured "
                          f"({', '.join(map(str, cameras)) or 'none'}): use a checkpoint trained with {len(cameras)} "
                          f"view(s) or configure {num_views} camera(s)")


def same_aspect(hw: tuple[int, int], trained_hw: tuple[int, int], tolerance: float = 0.01) -> bool:
    """Whether frames of size ``hw`` have the aspect ratio of the training frames (within 1 %). Frames of the same
    aspect ratio at another size are accepted (the encoders resize every frame to their own square input, so a
    256x192 camera feeds a policy trained on 320x240 frames as it would at 320x240); another aspect ratio would
    stretch the scene and is refused."""
    return abs(hw[1] / hw[0] - trained_hw[1] / trained_hw[0]) <= tolerance * trained_hw[1] / trained_hw[0]


def default_robot_stats(dim: int) -> NormalizationStats:
    """FR3 joint limits + Inspire 0..1000 for the 13-D layout; [-1, 1] identity for any other layout."""
    if dim != ACTION_DIM:
        return NormalizationStats.identity(dim)
    lo, hi = action_limits()
    return NormalizationStats(lo, hi, (lo + hi) / 2, (hi - lo) / np.sqrt(12.0))


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def default_dtype(device: torch.device) -> torch.dtype:
    """bf16 on CUDA, fp32 on CPU."""
    return torch.bfloat16 if torch.device(device).type == "cuda" else torch.float32


class JalaPolicy(nn.Module):
    def __init__(self, config: JalaPolicyConfig, backbone: JalaBackbone, texture_encoder: TextureEncoder,
                 state_perceiver: LatentPerceiver, action_head: FlowMatchingActionHead,
                 normalizer: PolicyNormalizer | None = None):
        super().__init__()
        self.config = config
        self.backbone = backbone
        self.texture_encoder = texture_encoder
        self.state_perceiver = state_perceiver
        self.action_head = action_head
        ah = config.action_head
        self.normalizer = normalizer or PolicyNormalizer(default_robot_stats(ah.state_dim),
                                                         default_robot_stats(ah.action_dim))
        if self.normalizer.state.dim != ah.state_dim or self.normalizer.action.dim != ah.action_dim:
            raise ConfigError("normalisation statistics do not match the action head's state/action dims")
        self._prompt_cache: dict[tuple[str, int], tuple[torch.Tensor, torch.Tensor]] = {}
        self.last_timing: dict[str, float] = {}
        self.last_stage_timing: dict[str, float] = {}  # preprocess / vision / llm / head ms of the last predict
        self.profile = False  # when True, predict() synchronises to time backbone and head separately
        # Inference runtime built from config.inference (configure_inference): the fast path's frame
        # preprocessor, the cached prompt of the current instruction and the head runner.
        self._runtime_key: tuple | None = None
        self._frame_preprocessor: FramePreprocessor | None = None
        self._encoded_prompt: EncodedPrompt | None = None
        self._head_runner: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor] | None = None

    # ------------------------------------------------------------------------------------------ building
    @classmethod
    def build(cls, config: JalaPolicyConfig, *, load_weights: bool = True, device: str | torch.device | None = None,
              dtype: torch.dtype | None = None) -> "JalaPolicy":
        """A new policy. With ``load_weights`` the real presets read their local pretrained directories
        (backbone.weights_dir, perceiver.encoder_weights_dir); the tiny preset is always random."""
        device = torch.device(device) if device is not None else default_device()
        dtype = dtype or default_dtype(device)
        backbone = JalaBackbone.build(config.backbone, config.motion, load_weights=load_weights, dtype=dtype)
        return cls._assemble(config, backbone, TextureEncoder(config.perceiver, load_weights=load_weights),
                             device, dtype)

    @classmethod
    def _assemble(cls, config, backbone, texture_encoder, device, dtype, normalizer=None) -> "JalaPolicy":
        perceiver = LatentPerceiver(config.perceiver, texture_encoder.dim, backbone.hidden_size)
        head = FlowMatchingActionHead(config.action_head, context_dim=backbone.hidden_size)
        policy = cls(config, backbone, texture_encoder, perceiver, head, normalizer)
        policy.to(device=device, dtype=dtype)
        policy.eval()
        return policy

    def save_pretrained(self, directory: str | Path) -> None:
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        (d / "config.json").write_text(self.config.to_json())
        self.normalizer.save(d / "normalization.json")
        self.backbone.model.save_pretrained(d / "backbone")
        self.backbone.tokenizer.save_pretrained(d / "backbone")
        self.texture_encoder.model.save_pretrained(d / "texture_encoder")
        heads = nn.ModuleDict({"state_perceiver": self.state_perceiver, "action_head": self.action_head})
        save_model(heads, str(d / "policy_heads.safetensors"))

    @classmethod
    def from_pretrained(cls, directory: str | Path, *, device: str | torch.device | None = None,
                        dtype: torch.dtype | None = None) -> "JalaPolicy":
        d = Path(directory).expanduser()
        missing = [n for n in ("config.json", "normalization.json", "backbone", "texture_encoder",
                               "policy_heads.safetensors") if not (d / n).exists()]
        if missing:
            raise MissingWeightsError(f"{d} is not a JALA policy checkpoint: missing {', '.join(missing)}")
        try:
            config = JalaPolicyConfig.from_dict(read_json_file(d / "config.json"))
        except ConfigError as exc:
            msg = str(exc)
            raise ConfigError(msg if str(d / "config.json") in msg else f"{d / 'config.json'}: {msg}") from None
        device = torch.device(device) if device is not None else default_device()
        dtype = dtype or default_dtype(device)
        model = InternVLForConditionalGeneration.from_pretrained(d / "backbone", dtype=dtype)
        backbone = JalaBackbone(config.backbone, config.motion, model, AutoTokenizer.from_pretrained(d / "backbone"))
        texture = TextureEncoder(config.perceiver, model=Dinov2Model.from_pretrained(d / "texture_encoder"))
        policy = cls._assemble(config, backbone, texture, torch.device("cpu"), torch.float32,
                               PolicyNormalizer.load(d / "normalization.json"))
        heads = nn.ModuleDict({"state_perceiver": policy.state_perceiver, "action_head": policy.action_head})
        missing_keys, unexpected = load_model(heads, str(d / "policy_heads.safetensors"), strict=False)
        if missing_keys or unexpected:
            raise MissingWeightsError(f"policy_heads.safetensors does not match the config: missing {missing_keys}, "
                                      f"unexpected {unexpected}")
        policy.to(device=device, dtype=dtype)
        return policy

    def set_normalization(self, state: NormalizationStats, action: NormalizationStats) -> None:
        self.normalizer = PolicyNormalizer(state, action)
        if state.dim != self.config.action_head.state_dim or action.dim != self.config.action_head.action_dim:
            raise ConfigError("normalisation statistics do not match the action head's state/action dims")

    def freeze_vision(self, frozen: bool = True) -> None:
        """Freeze the vision tower and projector (paper B.1), or with ``frozen=False`` make them trainable;
        ``config.backbone.freeze_vision`` follows (it decides whether they run under autograd). The texture
        encoder (DINOv2) is frozen either way, as in every stage of the paper."""
        self.backbone.freeze_vision(frozen)
        self.texture_encoder.requires_grad_(False)

    @property
    def device(self) -> torch.device:
        return self.backbone.device

    @property
    def dtype(self) -> torch.dtype:
        return self.backbone.dtype

    # --------------------------------------------------------------------------------------- embeddings
    def _texture_pixels(self, images: torch.Tensor) -> torch.Tensor:
        return self.texture_encoder.preprocess(images).to(self.dtype)

    @property
    def hand(self) -> int:
        """The perceiver hand head of this embodiment (``config.hand_side``)."""
        return LEFT_HAND if self.config.hand_side == "left" else RIGHT_HAND

    def state_latents(self, first_view: torch.Tensor) -> torch.Tensor:
        """LSP latents of the current frame, duplicated as (v0, v0), through the embodiment's hand head:
        (B, num_latents, hidden). Used by predict and post-training (compute_loss) alike."""
        return self._latents_from_pixels(self._texture_pixels(first_view))

    def _latents_from_pixels(self, texture_pixels: torch.Tensor) -> torch.Tensor:
        return self._latents_from_features(self.texture_encoder(texture_pixels))

    def _latents_from_features(self, feats: torch.Tensor) -> torch.Tensor:
        """LSP latents from the texture encoder's features of the current frame (used as both frames)."""
        return self.state_perceiver(feats, feats, self.hand)

    def _prompt(self, instruction: str) -> tuple[torch.Tensor, torch.Tensor]:
        key = (instruction, self.config.num_views)
        if key not in self._prompt_cache:
            n_lat = self.config.perceiver.num_latents if self.config.perceiver.use_state_tokens else 0
            text = self.config.prompt_template.format(instruction=instruction)
            ids = self.backbone.encode_prompt(text, self.config.num_views, n_lat)
            if len(self._prompt_cache) > 64:
                self._prompt_cache.clear()
            self._prompt_cache[key] = self.backbone.collate([ids])
        return self._prompt_cache[key]

    def predictive_embeddings(self, images: torch.Tensor, instructions: Sequence[str],
                              timer: StageTimer | None = None) -> torch.Tensor:
        """images: uint8 (B, views, H, W, 3). One forward pass over images + [state latents] + instruction +
        a fully masked motion chunk; returns the hidden states at the masked motion positions (B, 128, hidden).
        The eager reference path (training, and predict unless ``config.inference.fast``)."""
        timer = timer or StageTimer(self.device, synchronize=False)
        image_embeds, texture = self.visual_features(images, timer)
        return self.embeddings_from_features(image_embeds, texture, instructions, timer)

    def visual_features(self, images: torch.Tensor, timer: StageTimer | None = None
                        ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The outputs of the visual modules that post-training freezes (paper B.1), which depend on the images
        only: image tokens (B, views, n_img, hidden) of the vision tower + projector, and the texture encoder's
        patch features (B, tokens, dim) of the first view (None without state tokens). Post-training may cache
        them per frame (training.posttrain.features)."""
        timer = timer or StageTimer(self.device, synchronize=False)
        b, v = images.shape[:2]
        flat = images.reshape(b * v, *images.shape[2:])
        pixels = self.backbone.preprocess_images(flat)
        use_latents = self.config.perceiver.use_state_tokens
        texture_pixels = self._texture_pixels(images[:, 0]) if use_latents else None
        timer.lap("preprocess")
        image_embeds = self.backbone.image_tokens(pixels)
        texture = self.texture_encoder(texture_pixels) if use_latents else None
        timer.lap("vision")
        return image_embeds.reshape(b, v, *image_embeds.shape[1:]), texture

    def embeddings_from_features(self, image_embeds: torch.Tensor, texture: torch.Tensor | None,
                                 instructions: Sequence[str], timer: StageTimer | None = None) -> torch.Tensor:
        """The rest of ``predictive_embeddings`` from ``visual_features``' outputs: the state perceiver, the
        language model, and the hidden states at the masked motion positions (B, 128, hidden)."""
        timer = timer or StageTimer(self.device, synchronize=False)
        image_embeds = image_embeds.to(self.device, self.dtype)
        latents = None
        if self.config.perceiver.use_state_tokens:
            latents = self._latents_from_features(texture.to(self.device, self.dtype))
        prompts = [self._prompt(instr) for instr in instructions]
        if len({p[0].shape[1] for p in prompts}) == 1:
            ids = torch.cat([p[0] for p in prompts])
            mask = torch.cat([p[1] for p in prompts])
        else:
            ids, mask = self.backbone.collate([p[0][0] for p in prompts])
        hidden = self.backbone(ids, mask, None, latents=latents,
                               image_embeds=image_embeds.reshape(-1, *image_embeds.shape[2:]))
        emb = self.backbone.predictive_embeddings(hidden, ids.to(hidden.device))
        timer.lap("llm")
        return emb

    def _fast_predictive_embeddings(self, frames: np.ndarray, instruction: str, timer: StageTimer) -> torch.Tensor:
        """The fast path's predictive embeddings (1, 128, hidden) of one observation: see InferenceConfig.fast."""
        pixels, texture = self._frame_preprocessor(frames)
        timer.lap("preprocess")
        image_embeds = self.backbone.image_tokens(pixels)
        latents = self._latents_from_pixels(texture) if texture is not None else None
        timer.lap("vision")
        prompt = self._encoded_prompt
        if prompt is None or prompt.instruction != instruction:  # the cache holds the current instruction only
            ids, mask = self._prompt(instruction)
            prompt = self._encoded_prompt = self.backbone.encode_for_inference(instruction, ids, mask)
        emb = self.backbone.forward_encoded(prompt, image_embeds, latents)
        timer.lap("llm")
        return emb

    # ------------------------------------------------------------------------------------ inference runtime
    def configure_inference(self, inference: InferenceConfig | None = None) -> None:
        """Select how predict runs (``config.inference`` when None) and build what it needs now: the ONNX
        export and session of the head, the CUDA graph of the Euler steps (warm-up and capture). Call again after
        moving the policy or changing its weights; predict calls it by itself when the config changed."""
        if inference is not None:
            self.config.inference = inference
        cfg = self.config.inference
        cfg.__post_init__()
        context_len = 2 * self.config.motion.tokens_per_part
        context_dim = self.backbone.hidden_size
        self._encoded_prompt = None
        self._frame_preprocessor = None
        if cfg.fast:
            texture_size = self.texture_encoder.image_size if self.config.perceiver.use_state_tokens else None
            self._frame_preprocessor = FramePreprocessor(self.backbone.image_size, texture_size, self.device,
                                                         self.dtype)
        if cfg.head_backend == "onnxruntime":
            from .onnx_head import OnnxActionHead

            path = Path(cfg.onnx_path) if cfg.onnx_path else Path(tempfile.mkdtemp(prefix="jala_head_")) / "head.onnx"
            self._head_runner = OnnxActionHead.export(self.action_head, path, context_len=context_len,
                                                      context_dim=context_dim, device=self.device)
        elif cfg.fast and cfg.cuda_graph and self.device.type == "cuda":
            self._head_runner = CudaGraphEulerSampler(self.action_head, context_len=context_len,
                                                      context_dim=context_dim, device=self.device, dtype=self.dtype)
        else:
            self._head_runner = self.action_head.denoise
        self._runtime_key = self._inference_key()

    def _inference_key(self) -> tuple:
        c = self.config.inference
        return c.fast, c.head_backend, c.cuda_graph, c.onnx_path, self.device, self.dtype

        # ---------------------------------------------------------------------------------------- inference
    def _validate(self, images, instruction, proprio) -> tuple[np.ndarray, np.ndarray]:
        if isinstance(images, np.ndarray) and images.ndim == 3:
            images = [images]
        if not isinstance(images, (list, tuple)) or len(images) != self.config.num_views:
            raise PolicyInputError(f"expected {self.config.num_views} camera image(s), got "
                                   f"{len(images) if isinstance(images, (list, tuple)) else type(images).__name__}")
        for i, img in enumerate(images):
            if not isinstance(img, np.ndarray) or img.ndim != 3 or img.shape[2] != 3:
                raise PolicyInputError(f"image {i} must be an HxWx3 RGB numpy array, got "
                                       f"{getattr(img, 'shape', type(img).__name__)}")
            if img.dtype != np.uint8:
                raise PolicyInputError(f"image {i} must be uint8 RGB, got {img.dtype}")
            if self.config.input_image_hw is not None and not same_aspect(img.shape[:2], self.config.input_image_hw):
                h, w = self.config.input_image_hw
                raise PolicyInputError(f"image {i} is {img.shape[0]}x{img.shape[1]} but this policy was trained on "
                                       f"{h}x{w} frames, another aspect ratio; set the camera profile to match")
        if len({img.shape for img in images}) != 1:
            raise PolicyInputError("all camera images must have the same size")
        if not isinstance(instruction, str) or not instruction.strip():
            raise PolicyInputError("instruction must be a non-empty string")
        q = np.asarray(proprio, dtype=np.float64)
        if q.shape != (self.config.action_head.state_dim,):
            raise PolicyInputError(f"proprio must have shape ({self.config.action_head.state_dim},), got {q.shape}")
        if not np.all(np.isfinite(q)):
            raise PolicyInputError(f"proprio contains NaN or inf at indices {np.flatnonzero(~np.isfinite(q)).tolist()}")
        return np.stack(images), q

    @torch.inference_mode()
    def predict(self, images, instruction: str, proprio, timestamp: float | None = None,
                seed: int | None = None) -> TimedChunk:
        """One action chunk for one observation.

        images: one HxWx3 uint8 RGB array per camera view (a bare array when there is one view);
        proprio: (state_dim,) robot state (default layout: 7 FR3 joint angles [rad] + 6 Inspire angles 0..1000);
        timestamp: time of the observation (default time.monotonic()); the chunk's actions apply at
        timestamp + action_dt * (1..horizon) (a ``TimedChunk`` stamped with ``timestamp``, columns named
        ``embodiment.CHUNK_JOINT_NAMES`` for the robot layout, ``action_0..`` otherwise). seed makes the sampled chunk reproducible (the same noise on
        every path of ``config.inference``).
        """
        stamp = time.monotonic() if timestamp is None else float(timestamp)
        imgs, q = self._validate(images, instruction, proprio)
        if self._runtime_key != self._inference_key():
            self.configure_inference()
        timer = StageTimer(self.device, synchronize=self.profile)
        if self.config.inference.fast:
            emb = self._fast_predictive_embeddings(imgs, instruction, timer)
        else:
            img_t = torch.from_numpy(imgs).unsqueeze(0)
            if self.device.type == "cuda":
                img_t = img_t.pin_memory()
            emb = self.predictive_embeddings(img_t, [instruction], timer)
        backbone_done = timer.last
        state = self.normalizer.state.normalize(torch.as_tensor(q, dtype=torch.float32, device=self.device))
        generator = None
        if seed is not None:
            generator = torch.Generator(device=self.device).manual_seed(int(seed))
        noise = self.action_head.sample_noise(1, self.device, generator)
        if self.config.inference.noise_scale != 1.0:
            noise = noise * self.config.inference.noise_scale
        norm_actions = self._head_runner(emb, state.unsqueeze(0), noise)
        actions = self.from_model_actions(self.normalizer.action.unnormalize(norm_actions[0].cpu()),
                                          torch.as_tensor(q, dtype=torch.float32)).numpy()
        timer.lap("head")
        self.last_stage_timing = dict(timer.ms)
        self.last_timing = {"backbone_ms": (backbone_done - timer.start) * 1e3,
                            "head_ms": (timer.last - backbone_done) * 1e3, "total_ms": (timer.last - timer.start) * 1e3}
        if not np.all(np.isfinite(actions)):
            raise FloatingPointError("the policy produced NaN/inf actions; refusing to return them")
        dim = self.config.action_head.action_dim
        if dim == ACTION_DIM:
            # the hand cannot close past 0 or open past 1000 (an untrained head can ask for -12); arm targets are
            # never clamped: the FR3 safety gate refuses what is out of its limits
            actions[:, ARM_DOF:] = np.clip(actions[:, ARM_DOF:], *HAND_RANGE)
        names = CHUNK_JOINT_NAMES if dim == ACTION_DIM else tuple(f"action_{i}" for i in range(dim))
        return TimedChunk.at_rate(actions, stamp, self.config.action_dt, names)

    # ------------------------------------------------------------------------------ action representation
    def to_model_actions(self, actions: torch.Tensor, proprio: torch.Tensor) -> torch.Tensor:
        """Robot-unit action chunks (..., horizon, dim) -> what the head predicts (before normalisation): with
        ``arm_actions`` "relative" the arm columns become offsets from ``proprio``'s arm joints (..., dim)."""
        if self.config.arm_actions != "relative":
            return actions
        out = actions.clone()
        out[..., :ARM_DOF] = out[..., :ARM_DOF] - proprio[..., None, :ARM_DOF].to(out)
        return out

    def from_model_actions(self, actions: torch.Tensor, proprio: torch.Tensor) -> torch.Tensor:
        """The inverse of ``to_model_actions`` (after unnormalisation): robot-unit targets."""
        if self.config.arm_actions != "relative":
            return actions
        out = actions.clone()
        out[..., :ARM_DOF] = out[..., :ARM_DOF] + proprio[..., None, :ARM_DOF].to(out)
        return out

    # ----------------------------------------------------------------------------------------- training
    def compute_loss(self, images: torch.Tensor, instructions: Sequence[str], proprio: torch.Tensor,
                     actions: torch.Tensor, action_mask: torch.Tensor | None = None,
                     generator: torch.Generator | None = None) -> torch.Tensor:
        """Post-training flow-matching loss. images uint8 (B, views, H, W, 3); proprio (B, state_dim) and actions
        (B, horizon, action_dim) in robot units (normalised here)."""
        image_embeds, texture = self.visual_features(images)
        return self.loss_from_features(image_embeds, texture, instructions, proprio, actions, action_mask,
                                       generator=generator)

    def loss_from_features(self, image_embeds: torch.Tensor, texture: torch.Tensor | None,
                           instructions: Sequence[str], proprio: torch.Tensor, actions: torch.Tensor,
                           action_mask: torch.Tensor | None = None, *, generator: torch.Generator | None = None,
                           noise: torch.Tensor | None = None, t: torch.Tensor | None = None,
                           reduction: str = "mean") -> torch.Tensor:
        """``compute_loss`` from ``visual_features``' outputs (cached or not); ``noise``/``t`` and ``reduction``
        as ``FlowMatchingActionHead.loss``."""
        emb = self.embeddings_from_features(image_embeds, texture, instructions)
        proprio = proprio.to(self.device, torch.float32)
        state = self.normalizer.state.normalize(proprio)
        target = self.normalizer.action.normalize(self.to_model_actions(actions.to(self.device, torch.float32),
                                                                        proprio))
        return self.action_head.loss(emb, state, target, action_mask=action_mask, generator=generator, noise=noise,
                                     t=t, reduction=reduction)
