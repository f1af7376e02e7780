"""The JALA policy model (jala_policy/): vocabulary, backbone, perceivers, flow-matching head, one-call inference."""
import numpy as np
import pytest
import torch

from embodiment import ARM_JOINT_NAMES, CHUNK_JOINT_NAMES
from jala_policy import ConfigError, JalaPolicy, JalaPolicyConfig, PolicyInputError
from jala_policy.action_head import FlowMatchingActionHead
from jala_policy.backbone import JalaBackbone, MissingWeightsError, image_features
from jala_policy.config import ActionHeadConfig, BackboneConfig, MotionVocabConfig, PerceiverConfig
from jala_policy.motion_tokens import MotionVocabulary
from jala_policy.perceiver import LEFT_HAND, RIGHT_HAND, LatentPerceiver, ema_update_perceivers
from jala_runtime.chunk import TimedChunk
from tests.helpers import sample_observation, tiny_policy

IMG_HW = (48, 64)
INSTR = "water the plant"


@pytest.fixture(scope="module")
def policy():
    return tiny_policy(IMG_HW)


@pytest.fixture
def obs():
    return sample_observation(IMG_HW, seed=0)


# ------------------------------------------------------------------------------------------- vocabulary
def test_motion_vocabulary_ids_and_chunk_format():
    v = MotionVocabulary(base_id=1000)
    assert (v.mot_start, v.mot_end, v.mask_id) == (1000, 1001, 1002)
    assert v.size == 5 + 2 * 4096 and v.end_id == 1000 + v.size
    assert v.part_offset("finger") - v.part_offset("wrist") == 4096
    wrist = torch.arange(64)
    finger = torch.arange(64) + 4000
    ids = v.wrap_chunk(wrist, finger)
    assert ids.shape == (130,) and v.chunk_length == 130
    assert ids[0] == v.mot_start and ids[-1] == v.mot_end
    assert torch.equal(v.ids_to_codes(ids[1:65], "wrist"), wrist)
    assert torch.equal(v.ids_to_codes(ids[65:129], "finger"), finger)
    assert v.is_motion_code(ids[1:129]).all() and not v.is_motion_code(ids[[0, 129]]).any()
    with pytest.raises(ValueError, match="wrist codes must lie"):
        v.wrap_chunk(torch.full((64,), 4096), finger)
    with pytest.raises(ValueError, match="64 tokens"):
        v.wrap_chunk(wrist[:10], finger)


def test_left_right_chunks_interleave_in_time():
    v = MotionVocabulary(base_id=10)
    left = [v.wrap_chunk(torch.full((64,), i), torch.full((64,), i)) for i in (1, 2)]
    right = [v.wrap_chunk(torch.full((64,), i), torch.full((64,), i)) for i in (7, 8)]
    seq = v.interleave_hands(left, right).view(4, 130)
    firsts = v.ids_to_codes(seq[:, 1], "wrist").tolist()
    assert firsts == [1, 7, 2, 8]
    with pytest.raises(ValueError):
        v.interleave_hands(left, right[:1])


# --------------------------------------------------------------------------------------------- backbone
def test_masked_positions_are_exactly_the_motion_positions(policy):
    bb = policy.backbone
    ids = bb.encode_prompt(INSTR, num_views=2, num_latents=4)
    start = int((ids == bb.motion.mot_start).nonzero()[0])
    end = int((ids == bb.motion.mot_end).nonzero()[0])
    masked = bb.masked_positions(ids.unsqueeze(0))[0].nonzero().flatten()
    assert torch.equal(masked, torch.arange(start + 1, end))
    assert masked.numel() == 128
    assert int((ids == bb.image_token_id).sum()) == 2 * bb.num_image_tokens
    assert int((ids == bb.motion.latent_id).sum()) == 4
    # the motion ids live beyond the text vocabulary and inside the resized embedding table
    assert bb.motion.base_id >= len(bb.tokenizer)
    assert bb.model.get_input_embeddings().num_embeddings >= bb.motion.end_id


def test_image_features_handles_tensor_and_output_object_return_types():
    feats = torch.randn(2, 5, 8)

    class Old:  # transformers 4.52: a tensor
        def get_image_features(self, pixel_values):
            return feats

    class New:  # transformers 5.x: an output object, projected tokens in pooler_output
        def get_image_features(self, pixel_values):
            from transformers.modeling_outputs import BaseModelOutputWithPooling
            return BaseModelOutputWithPooling(last_hidden_state=torch.zeros(2, 99, 4), pooler_output=feats)

    assert image_features(Old(), None) is feats
    assert image_features(New(), None) is feats


def test_backbone_image_tokens_shape(policy):
    bb = policy.backbone
    px = bb.preprocess_images(torch.zeros(3, *IMG_HW, 3, dtype=torch.uint8))
    assert px.shape == (3, 3, bb.image_size, bb.image_size)
    assert bb.image_tokens(px).shape == (3, bb.num_image_tokens, bb.hidden_size)


def test_vision_is_frozen_for_post_training(policy):
    bb = policy.backbone
    assert not any(p.requires_grad for p in bb.model.model.vision_tower.parameters())
    assert not any(p.requires_grad for p in bb.model.model.multi_modal_projector.parameters())
    assert any(p.requires_grad for p in bb.model.model.language_model.parameters())
    assert not any(p.requires_grad for p in policy.texture_encoder.parameters())


# -------------------------------------------------------------------------------------------- perceiver
def _perceiver(seed):
    torch.manual_seed(seed)
    return LatentPerceiver(PerceiverConfig(encoder_preset="tiny", num_latents=4, width=32, num_heads=4), 24, 16)


def test_perceiver_shapes_and_hand_heads():
    p = _perceiver(0)
    a, b = torch.randn(3, 10, 24), torch.randn(3, 10, 24)
    right = p(a, b, RIGHT_HAND)
    left = p(a, b, LEFT_HAND)
    assert right.shape == left.shape == (3, 4, 16)
    assert not torch.allclose(left, right)
    mixed = p(a, b, torch.tensor([0, 1, 0]))
    assert torch.allclose(mixed[0], left[0]) and torch.allclose(mixed[1], right[1])
    # the pair order matters (LAP: dynamics between boundary frames)
    assert not torch.allclose(p(b, a, RIGHT_HAND), right)
    with pytest.raises(ValueError, match="hand must be"):
        p(a, b, torch.tensor([0, 2, 1]))


def test_ema_update_follows_eq_6_and_7():
    lap, lsp = _perceiver(1), _perceiver(2)
    alpha = 0.9
    lap_b0 = [t.detach().clone() for t in lap.backbone_parameters()]
    lap_q0 = [t.detach().clone() for t in lap.query_parameters()]
    lsp_b0 = [t.detach().clone() for t in lsp.backbone_parameters()]
    lsp_q0 = [t.detach().clone() for t in lsp.query_parameters()]
    ema_update_perceivers(lap, lsp, alpha)
    for new, old, src in zip(lap.backbone_parameters(), lap_b0, lsp_b0):  # eq. 6
        torch.testing.assert_close(new, alpha * old + (1 - alpha) * src)
    for new, old, src in zip(lsp.query_parameters(), lsp_q0, lap_q0):  # eq. 7
        torch.testing.assert_close(new, alpha * old + (1 - alpha) * src)
    for new, old in zip(lap.query_parameters(), lap_q0):  # LAP queries untouched
        assert torch.equal(new, old)
    for new, old in zip(lsp.backbone_parameters(), lsp_b0):  # LSP backbone untouched
        assert torch.equal(new, old)
    assert len(lap.query_parameters()) == 1 and len(lap.backbone_parameters()) > 5
    with pytest.raises(ValueError):
        ema_update_perceivers(lap, lsp, 1.0)


# ------------------------------------------------------------------------------------------ action head
def _head(**kw):
    torch.manual_seed(0)
    cfg = ActionHeadConfig(num_layers=2, num_heads=4, hidden_size=64, action_horizon=8, action_dim=5, state_dim=3,
                           **kw)
    return FlowMatchingActionHead(cfg, context_dim=16)


def test_sampler_integrates_toward_the_data():
    """With the exact velocity field of the documented path (A^t = t A + (1-t) eps), the Euler sampler must land
    on A; the paper's eq. 8 sign (eps - A) would drive it away."""
    head = _head()
    target = torch.randn(1, 8, 5)

    def oracle(x, t, state, kv, mask=None):
        return (target - x) / (1.0 - t.view(-1, 1, 1))

    head.velocity = oracle
    out = head.sample(torch.zeros(1, 4, 16), torch.zeros(1, 3), num_steps=4)
    torch.testing.assert_close(out, target, atol=1e-5, rtol=1e-5)

    head.velocity = lambda x, t, s, kv, m=None: -oracle(x, t, s, kv, m)
    assert (head.sample(torch.zeros(1, 4, 16), torch.zeros(1, 3), num_steps=4) - target).abs().mean() > 1.0


def test_context_keys_values_computed_once_per_chunk():
    head = _head(num_inference_steps=4)
    calls = []
    for blk in head.blocks:
        if blk.cross:
            orig = blk.context_kv
            blk.context_kv = (lambda f: (lambda c: (calls.append(1), f(c))[1]))(orig)
    head.sample(torch.randn(2, 4, 16), torch.randn(2, 3))
    assert len(calls) == sum(blk.cross for blk in head.blocks) == 1  # not once per denoising step


def test_flow_head_overfits_one_chunk():
    head = _head()
    g = torch.Generator().manual_seed(0)
    emb, state = torch.randn(1, 4, 16, generator=g), torch.randn(1, 3, generator=g)
    chunk = torch.rand(1, 8, 5, generator=g) * 2 - 1
    opt = torch.optim.AdamW(head.parameters(), lr=2e-3)

    def batch_loss():
        return head.loss(emb.expand(32, -1, -1), state.expand(32, -1), chunk.expand(32, -1, -1))

    with torch.no_grad():
        first = np.mean([batch_loss().item() for _ in range(5)])
    for _ in range(400):
        opt.zero_grad()
        loss = batch_loss()
        loss.backward()
        opt.step()
    with torch.no_grad():
        last = np.mean([batch_loss().item() for _ in range(5)])
        sampled = head.sample(emb, state, generator=torch.Generator().manual_seed(1))
    assert last < first / 10, (first, last)
    assert (sampled - chunk).abs().mean() < 0.1, (sampled - chunk).abs().mean()


def test_action_head_config_validation():
    with pytest.raises(ConfigError):
        ActionHeadConfig(hidden_size=100, num_heads=32)
    with pytest.raises(ConfigError):
        ActionHeadConfig(num_layers=3)


# ---------------------------------------------------------------------------------------------- policy
def test_predict_shapes_dtypes_and_timestamps(policy, obs):
    img, q = obs
    chunk = policy.predict(img, INSTR, q, timestamp=10.0, seed=0)
    assert isinstance(chunk, TimedChunk) and chunk.stamp == 10.0 and chunk.joint_names == CHUNK_JOINT_NAMES
    assert chunk.positions.shape == (16, 13) and chunk.positions.dtype == np.float64
    np.testing.assert_allclose(chunk.times, 10.0 + policy.config.action_dt * np.arange(1, 17))
    assert chunk.select(ARM_JOINT_NAMES).positions.shape == (16, 7)
    assert policy.dtype == torch.float32  # fp32 on CPU
    assert set(policy.last_timing) == {"backbone_ms", "head_ms", "total_ms"}
    emb = policy.predictive_embeddings(torch.from_numpy(img)[None, None], [INSTR])
    assert emb.shape == (1, 128, policy.backbone.hidden_size)


def test_seeded_prediction_is_reproducible(policy, obs):
    img, q = obs
    a = policy.predict(img, INSTR, q, seed=3).positions
    b = policy.predict(img, INSTR, q, seed=3).positions
    c = policy.predict(img, INSTR, q, seed=4).positions
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_prediction_depends_on_image_and_instruction(policy, obs):
    img, q = obs
    a = policy.predict(img, INSTR, q, seed=0).positions
    assert not np.array_equal(a, policy.predict(255 - img, INSTR, q, seed=0).positions)
    assert not np.array_equal(a, policy.predict(img, "wipe the board", q, seed=0).positions)


def test_save_load_round_trip_gives_identical_outputs(policy, obs, tmp_path):
    img, q = obs
    policy.set_normalization(policy.normalizer.state, policy.normalizer.action)
    policy.save_pretrained(tmp_path / "ckpt")
    assert (tmp_path / "ckpt" / "policy_heads.safetensors").is_file()
    assert list((tmp_path / "ckpt" / "backbone").glob("*.safetensors"))
    loaded = JalaPolicy.from_pretrained(tmp_path / "ckpt", device="cpu")
    np.testing.assert_array_equal(policy.predict(img, INSTR, q, seed=7).positions,
                                  loaded.predict(img, INSTR, q, seed=7).positions)
    assert loaded.config.to_dict() == policy.config.to_dict()


def test_two_view_policy(obs):
    img, q = obs
    p = JalaPolicy.build(JalaPolicyConfig.from_preset("tiny", num_views=2))
    chunk = p.predict([img, img[::-1].copy()], "wipe the board", q, seed=0)
    assert chunk.positions.shape == (16, 13)
    with pytest.raises(PolicyInputError, match="expected 2 camera"):
        p.predict(img, "wipe the board", q)


def test_post_training_loss_backpropagates_to_llm_and_head_only(obs):
    img, q = obs
    torch.manual_seed(0)
    p = JalaPolicy.build(JalaPolicyConfig.from_preset("tiny"))
    p.train()
    images = torch.from_numpy(np.stack([img, img]))[:, None]
    proprio = torch.tensor(np.stack([q, q]), dtype=torch.float32)
    actions = proprio[:, None].repeat(1, 16, 1)
    loss = p.compute_loss(images, [INSTR, "other"], proprio, actions)
    loss.backward()
    assert torch.isfinite(loss)
    assert all(prm.grad is None for prm in p.backbone.model.model.vision_tower.parameters())
    assert any(prm.grad is not None and prm.grad.abs().sum() > 0
               for prm in p.backbone.model.model.language_model.parameters())
    assert p.action_head.action_decoder.weight.grad is not None
    assert p.state_perceiver.queries.grad is not None


@pytest.mark.parametrize("bad,match", [
    ("size", "trained on 48x64 frames, another aspect ratio"),
    ("dtype", "uint8"),
    ("channels", "HxWx3"),
    ("nan", "NaN"),
    ("proprio_shape", "shape"),
    ("instruction", "non-empty"),
])
def test_bad_inputs_raise_clear_errors(policy, obs, bad, match):
    img, q = obs
    kwargs = {"images": img, "instruction": INSTR, "proprio": q}
    if bad == "size":
        kwargs["images"] = np.zeros((540, 960, 3), np.uint8)  # 16:9 for a 4:3 policy
    elif bad == "dtype":
        kwargs["images"] = img.astype(np.float32)
    elif bad == "channels":
        kwargs["images"] = img[..., :1]
    elif bad == "nan":
        q = q.copy()
        q[2] = np.nan
        kwargs["proprio"] = q
    elif bad == "proprio_shape":
        kwargs["proprio"] = q[:7]
    elif bad == "instruction":
        kwargs["instruction"] = "  "
    with pytest.raises(PolicyInputError, match=match):
        policy.predict(**kwargs)


def test_unknown_preset_and_missing_weights_are_clear(tmp_path):
    with pytest.raises(ConfigError, match="unknown preset 'internvl9'"):
        JalaPolicyConfig.from_preset("internvl9")
    with pytest.raises(ConfigError, match="unknown backbone preset"):
        BackboneConfig(preset="llava")
    with pytest.raises(MissingWeightsError, match="needs backbone.weights_dir"):
        JalaBackbone.build(BackboneConfig(), MotionVocabConfig())
    with pytest.raises(MissingWeightsError, match="does not exist.*OpenGVLab/InternVL3-2B-hf"):
        JalaBackbone.build(BackboneConfig(weights_dir=str(tmp_path / "nope")), MotionVocabConfig())
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "config.json").write_text("{}")
    with pytest.raises(MissingWeightsError, match="no \\*.safetensors"):
        JalaBackbone.build(BackboneConfig(weights_dir=str(tmp_path / "empty")), MotionVocabConfig())
    with pytest.raises(MissingWeightsError, match="not a JALA policy checkpoint"):
        JalaPolicy.from_pretrained(tmp_path / "empty")


def test_config_json_round_trip_and_validation():
    cfg = JalaPolicyConfig.from_preset("tiny", num_views=2, input_image_hw=(540, 960))
    again = JalaPolicyConfig.from_dict(cfg.to_dict())
    assert again.to_dict() == cfg.to_dict() and again.input_image_hw == (540, 960)
    with pytest.raises(ConfigError, match="invalid JALA policy config"):
        JalaPolicyConfig.from_dict({**cfg.to_dict(), "bogus": 1})
    with pytest.raises(ConfigError):
        JalaPolicyConfig.from_preset("tiny", nonexistent=3)
    real = JalaPolicyConfig.from_preset("internvl3-2b")
    assert (real.action_head.num_layers, real.action_head.num_heads, real.action_head.hidden_size) == (16, 32, 2048)
    assert (real.action_head.action_horizon, real.action_head.action_dim, real.action_head.num_inference_steps) == \
        (16, 13, 4)


def test_predict_clamps_hand_targets_into_the_hands_range_but_never_the_arm(obs):
    """An extrapolating head may ask the Inspire for -57 or 1040: the hand columns are clamped to 0..1000, the arm
    columns are left for the safety gate to judge."""
    from jala_policy.normalization import NormalizationStats

    img, q = obs
    p = JalaPolicy.build(JalaPolicyConfig.from_preset("tiny", input_image_hw=IMG_HW))
    dim = p.config.action_head.action_dim
    # a very wide action range: the random head's outputs land far outside 0..1000 and far beyond +-3 rad
    lo, hi = np.full(dim, -5000.0), np.full(dim, 5000.0)
    p.set_normalization(p.normalizer.state, NormalizationStats(lo, hi, np.zeros(dim), np.ones(dim)))
    a = p.predict(img, INSTR, q, seed=0).positions
    assert a[:, 7:].min() >= 0.0 and a[:, 7:].max() <= 1000.0
    assert np.any((a[:, 7:] == 0.0) | (a[:, 7:] == 1000.0))  # it did clamp
    assert np.abs(a[:, :7]).max() > 1000.0  # arm targets untouched


def test_frames_of_the_training_aspect_ratio_are_accepted_at_another_size_and_others_refused(obs):
    """A policy trained on 48x64 frames runs on 96x128 or 36x48 frames (the encoders resize every frame to their
    own square input) and refuses 48x48 or 64x48 frames (a stretched scene)."""
    from jala_policy.policy import PolicyInputError

    _, q = obs
    p = JalaPolicy.build(JalaPolicyConfig.from_preset("tiny", input_image_hw=IMG_HW))
    for hw in ((96, 128), (36, 48), IMG_HW):
        chunk = p.predict(np.zeros((*hw, 3), np.uint8), INSTR, q, seed=0)
        assert np.isfinite(chunk.positions).all()
    for hw in ((48, 48), (64, 48)):
        with pytest.raises(PolicyInputError, match="another aspect ratio"):
            p.predict(np.zeros((*hw, 3), np.uint8), INSTR, q, seed=0)


def test_relative_arm_actions_are_offsets_from_the_observed_joints(obs):
    """arm_actions "relative": the head's arm columns are offsets from proprio[:7] (hand columns absolute); a head
    whose normalised output means "no offset" returns the observed arm joints as every arm target."""
    from jala_policy.normalization import NormalizationStats

    img, q = obs
    p = JalaPolicy.build(JalaPolicyConfig.from_preset("tiny", input_image_hw=IMG_HW, arm_actions="relative"))
    actions = torch.randn(2, 16, 13)
    proprio = torch.randn(2, 13)
    model = p.to_model_actions(actions, proprio)
    torch.testing.assert_close(model[..., :7], actions[..., :7] - proprio[:, None, :7])
    torch.testing.assert_close(model[..., 7:], actions[..., 7:])
    torch.testing.assert_close(p.from_model_actions(model, proprio), actions)
    # every model output unnormalises to offset 0 on the arm (a zero-width range) and 500 on the hand
    dim = p.config.action_head.action_dim
    lo = np.r_[np.zeros(7), np.full(dim - 7, 500.0)]
    p.set_normalization(p.normalizer.state, NormalizationStats(lo, lo.copy(), lo, np.zeros(dim)))
    chunk = p.predict(img, INSTR, q, seed=0)
    np.testing.assert_allclose(chunk.positions[:, :7], np.tile(q[:7], (16, 1)), atol=1e-5)
    np.testing.assert_allclose(chunk.positions[:, 7:], 500.0)


def test_relative_arm_actions_need_the_robot_layout():
    with pytest.raises(ConfigError, match="robot layout"):
        JalaPolicyConfig.from_preset("tiny", arm_actions="relative",
                                     action_head=ActionHeadConfig.from_preset("tiny", action_dim=7, state_dim=7))


def test_noise_scale_scales_the_samplers_starting_noise(obs):
    from jala_policy.config import InferenceConfig

    img, q = obs
    p = JalaPolicy.build(JalaPolicyConfig.from_preset("tiny", input_image_hw=IMG_HW))
    p.configure_inference()
    seen, run = [], p._head_runner
    p._head_runner = lambda emb, state, noise: (seen.append(noise.clone()), run(emb, state, noise))[1]
    full = p.predict(img, INSTR, q, seed=3).positions
    p.config.inference.noise_scale = 0.5
    half = p.predict(img, INSTR, q, seed=3).positions
    torch.testing.assert_close(seen[1], 0.5 * seen[0])
    assert not np.allclose(full, half)
    with pytest.raises(ConfigError, match="noise_scale"):
        InferenceConfig(noise_scale=0.0)
