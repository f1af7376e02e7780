"""Fast inference paths of the JALA policy against the eager reference: ONNX export of the action head and its
ONNX Runtime backend, torch frame preprocessing, the instruction cache, the fast predict path (CUDA graph on CUDA).

Tolerances (float32 on CPU):
- head level, normalised actions (values of order 1): ONNX Runtime vs eager torch within 1e-4 absolute;
- preprocessing, normalised pixels (order 1): within 1e-5 absolute (the normalisation is folded into one
  multiply-add after the resize instead of before it);
- predict level, robot units (joint angles in rad, Inspire angles 0..1000): allclose with rtol 1e-5 and atol
  1e-3, about 10 float32 ulps at 1000.
"""
import numpy as np
import pytest
import torch

from jala_policy import ConfigError, InferenceConfig, JalaPolicy, JalaPolicyConfig
from jala_policy.action_head import EulerSampler, FlowMatchingActionHead
from jala_policy.config import ActionHeadConfig
from jala_policy.fast_inference import FramePreprocessor
from jala_policy.onnx_head import OnnxActionHead, export_action_head
from tests.helpers import sample_observation, tiny_policy

pytestmark = pytest.mark.usefixtures("one_torch_thread")

pytest.importorskip("onnxruntime")

IMG_HW = (48, 64)
INSTR = "water the plant"
HEAD_ATOL = 1e-4
PIXEL_ATOL = 1e-5
ROBOT_TOL = {"rtol": 1e-5, "atol": 1e-3}


@pytest.fixture(scope="module")
def policy():
    return tiny_policy(IMG_HW)


@pytest.fixture
def obs():
    return sample_observation(IMG_HW, seed=1)


def _head_inputs(head: FlowMatchingActionHead, context_len: int, context_dim: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    c = head.config
    return (torch.randn(1, context_len, context_dim, generator=g), torch.randn(1, c.state_dim, generator=g),
            torch.randn(1, c.action_horizon, c.action_dim, generator=g))


def _predict(policy, inference: InferenceConfig, img, q, instruction=INSTR, seed=7) -> np.ndarray:
    policy.configure_inference(inference)
    try:
        return policy.predict(img, instruction, q, seed=seed).positions
    finally:
        policy.configure_inference(InferenceConfig())


# ----------------------------------------------------------------------------------------------- ONNX head
def test_onnx_runtime_head_matches_the_eager_head_for_the_same_noise(tmp_path):
    torch.manual_seed(0)
    head = FlowMatchingActionHead(ActionHeadConfig.from_preset("tiny"), context_dim=64).eval()
    ort_head = OnnxActionHead.export(head, tmp_path / "head.onnx", context_len=128, context_dim=64)
    for seed in (0, 1):
        emb, state, noise = _head_inputs(head, 128, 64, seed)
        with torch.no_grad():
            expected = head.denoise(emb, state, noise)
        got = ort_head(emb, state, noise)
        assert got.shape == (1, 16, 13) and got.dtype == torch.float32
        assert torch.allclose(got, expected, rtol=0, atol=HEAD_ATOL), (got - expected).abs().max()
        assert not torch.allclose(got, noise, atol=1e-2)  # the sampler moved the noise


def test_onnx_export_is_refused_for_another_head(tmp_path):
    head = FlowMatchingActionHead(ActionHeadConfig.from_preset("tiny"), context_dim=64).eval()
    path = export_action_head(head, tmp_path / "head.onnx", context_len=128, context_dim=64)
    other = FlowMatchingActionHead(ActionHeadConfig.from_preset("tiny", num_inference_steps=8), context_dim=64)
    with pytest.raises(ValueError, match="export it again"):
        OnnxActionHead(path, other, context_len=128, context_dim=64)


def test_real_size_head_sampler_traces_to_one_chunk_on_the_meta_device():
    """The 944 M ``paper`` head: exporting it with weights is a 3.8 GB file and tracing it on this CPU takes
    minutes, so its graph is checked by abstract tracing (torch.export on the meta device, no memory): the whole
    4-step sampler traces with static shapes to one (1, 16, 13) chunk. The ONNX export itself is covered by
    the tiny head above (same code, same graph structure)."""
    with torch.device("meta"):
        head = FlowMatchingActionHead(ActionHeadConfig.from_preset("paper"), context_dim=1536).eval()
        inputs = _head_inputs_meta(head, 128, 1536)
    assert 940e6 < sum(p.numel() for p in head.parameters()) < 950e6
    program = torch.export.export(EulerSampler(head), inputs)
    out = program.module()(*inputs)
    assert out.device.type == "meta" and tuple(out.shape) == (1, 16, 13) and out.dtype == torch.float32
    ops = [n for n in program.graph.nodes if n.op == "call_function"]
    attention = [n for n in ops if "scaled_dot_product_attention" in str(n.target)]
    assert len(attention) == 4 * 16  # 4 Euler steps x 16 blocks, unrolled


def _head_inputs_meta(head, context_len, context_dim):
    c = head.config
    return (torch.empty(1, context_len, context_dim), torch.empty(1, c.state_dim),
            torch.empty(1, c.action_horizon, c.action_dim))


def test_policy_predict_with_the_onnx_runtime_head_matches_eager(policy, obs, tmp_path):
    img, q = obs
    eager = _predict(policy, InferenceConfig(), img, q)
    ort = _predict(policy, InferenceConfig(head_backend="onnxruntime", onnx_path=str(tmp_path / "h.onnx")), img, q)
    np.testing.assert_allclose(ort, eager, **ROBOT_TOL)
    assert (tmp_path / "h.onnx").is_file()


def test_inference_config_round_trips_and_refuses_unknown_backends():
    with pytest.raises(ConfigError, match="head_backend"):
        InferenceConfig(head_backend="tensorrt")
    cfg = JalaPolicyConfig.from_preset("tiny", inference=InferenceConfig(fast=True, head_backend="onnxruntime"))
    back = JalaPolicyConfig.from_dict(cfg.to_dict())
    assert back.inference == cfg.inference
    old = cfg.to_dict()
    del old["inference"]  # configs written before the field existed: the eager default
    assert JalaPolicyConfig.from_dict(old).inference == InferenceConfig()


# ------------------------------------------------------------------------------------------- fast path
@pytest.mark.parametrize("hw", [IMG_HW, (64, 64), (120, 90)])
def test_fast_frame_preprocessing_matches_the_eager_preprocessing(policy, hw):
    rng = np.random.default_rng(2)
    frames = rng.integers(0, 256, (2, *hw, 3), dtype=np.uint8)
    prep = FramePreprocessor(policy.backbone.image_size, policy.texture_encoder.image_size, policy.device,
                             policy.dtype)
    pixels, texture = prep(frames)
    frames_t = torch.from_numpy(frames)
    eager_pixels = policy.backbone.preprocess_images(frames_t)
    eager_texture = policy._texture_pixels(frames_t[:1])
    assert pixels.shape == eager_pixels.shape and texture.shape == eager_texture.shape
    assert torch.allclose(pixels, eager_pixels, rtol=0, atol=PIXEL_ATOL), (pixels - eager_pixels).abs().max()
    assert torch.allclose(texture, eager_texture, rtol=0, atol=PIXEL_ATOL), (texture - eager_texture).abs().max()


def test_fast_predict_matches_eager_predict_for_the_same_seed(policy, obs):
    img, q = obs
    eager = _predict(policy, InferenceConfig(), img, q)
    fast = _predict(policy, InferenceConfig(fast=True), img, q)  # on CPU: no CUDA graph, same sampler
    np.testing.assert_allclose(fast, eager, **ROBOT_TOL)
    fast_ort = _predict(policy, InferenceConfig(fast=True, head_backend="onnxruntime"), img, q)
    np.testing.assert_allclose(fast_ort, eager, **ROBOT_TOL)
    assert not np.allclose(_predict(policy, InferenceConfig(fast=True), img, q, seed=8), eager, **ROBOT_TOL)


def test_a_changed_instruction_invalidates_the_instruction_cache(policy, obs):
    img, q = obs
    policy.configure_inference(InferenceConfig(fast=True))
    try:
        first = policy.predict(img, INSTR, q, seed=3).positions
        cached = policy._encoded_prompt
        assert cached is not None and cached.instruction == INSTR
        assert np.array_equal(policy.predict(img, INSTR, q, seed=3).positions, first)
        assert policy._encoded_prompt is cached  # reused while the instruction is unchanged
        changed = policy.predict(img, "wipe the board", q, seed=3).positions
        assert policy._encoded_prompt is not cached and policy._encoded_prompt.instruction == "wipe the board"
        back = policy.predict(img, INSTR, q, seed=3).positions
    finally:
        policy.configure_inference(InferenceConfig())
    assert not np.allclose(changed, first, **ROBOT_TOL)
    np.testing.assert_allclose(back, first, **ROBOT_TOL)
    # equal to a fresh policy that never cached anything (same weights, eager path)
    fresh = JalaPolicy.build(JalaPolicyConfig.from_preset("tiny", input_image_hw=IMG_HW))
    fresh.load_state_dict(policy.state_dict())
    assert fresh._encoded_prompt is None and not fresh._prompt_cache
    np.testing.assert_allclose(changed, fresh.predict(img, "wipe the board", q, seed=3).positions, **ROBOT_TOL)


def test_fast_predict_with_two_views_matches_eager(obs):
    torch.manual_seed(1)
    policy = JalaPolicy.build(JalaPolicyConfig.from_preset("tiny", num_views=2, input_image_hw=IMG_HW))
    img, q = obs
    views = [img, np.ascontiguousarray(img[::-1])]
    eager = _predict(policy, InferenceConfig(), views, q)
    fast = _predict(policy, InferenceConfig(fast=True), views, q)
    np.testing.assert_allclose(fast, eager, **ROBOT_TOL)
    assert set(policy.last_stage_timing) == {"preprocess", "vision", "llm", "head"}


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA graph capture needs a CUDA device")
def test_cuda_graph_fast_path_matches_eager_on_cuda(obs):
    torch.manual_seed(0)
    policy = JalaPolicy.build(JalaPolicyConfig.from_preset("tiny", input_image_hw=IMG_HW), device="cuda",
                              dtype=torch.float32)
    img, q = obs
    eager = _predict(policy, InferenceConfig(), img, q)
    graphed = _predict(policy, InferenceConfig(fast=True, cuda_graph=True), img, q)
    np.testing.assert_allclose(graphed, eager, rtol=1e-4, atol=1e-2)
