"""Reproduction fidelity: the model, pretraining and generation do what the JALA paper (and GR00T N1.5, which it
follows) says. One section per point: block attention in motion chunks, frozen vision after export, generation
conditioned like pretraining, like-with-like hand metrics, GR00T's timestep sampling and head widths, one camera
view check, the embodiment's hand side."""
from __future__ import annotations

import os

import numpy as np
import pytest
import torch

os.environ.setdefault("MUJOCO_GL", "osmesa")

from jala_policy import JalaPolicy, JalaPolicyConfig  # noqa: E402
from jala_policy.action_head import FlowMatchingActionHead  # noqa: E402
from jala_policy.backbone import JalaBackbone  # noqa: E402
from jala_policy.config import ActionHeadConfig, BackboneConfig, ConfigError, MotionVocabConfig  # noqa: E402
from jala_policy.perceiver import LEFT_HAND, RIGHT_HAND  # noqa: E402
from training.data.hand import HandSkeleton  # noqa: E402

INSTR = "wipe the board"


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tests/conftest.py


@pytest.fixture(scope="module")
def policy():
    torch.manual_seed(0)
    return JalaPolicy.build(JalaPolicyConfig.from_preset("tiny"), device="cpu", dtype=torch.float32)


@pytest.fixture
def obs():
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)
    q = np.array([0.0, -0.3, 0.0, -2.0, 0.0, 1.8, 0.8, 1000, 1000, 1000, 1000, 900, 500], dtype=np.float64)
    return img, q


@pytest.fixture(scope="module")
def tokenizer():
    from training.tokenizer import MotionTokenizer, MotionTokenizerConfig

    cfg = MotionTokenizerConfig.tiny()
    cfg.kmeans_init = False
    torch.manual_seed(0)
    return MotionTokenizer(cfg).eval()


class _OneSample:
    """A dataset of one HandVideoDataset item (what generate_for_dataset reads)."""

    motion_indices = [0]

    def __init__(self, item: dict):
        self.item = item

    def __getitem__(self, index: int) -> dict:
        return self.item


@pytest.fixture(scope="module")
def two_hand_item(tmp_path_factory):
    """A synthetic sample with both hands annotated in every chunk, whose stored joints are a 10 % larger
    skeleton than the FK one (as MANO joints differ from the approximate skeleton)."""
    from training.data import DataConfig, HandVideoDataset
    from training.data.format import load_motion, save_motion
    from training.data.synthetic import generate

    root = tmp_path_factory.mktemp("fidelity_data")
    generate(root, 12, num_frames=45, image_size=32, video_only_fraction=0.0, test_fraction=0.0, seed=2)
    ds = HandVideoDataset(DataConfig(root=str(root), image_size=(32, 32)))
    idx = next(i for i in range(len(ds)) if bool(ds[i]["chunk_valid"].all()))
    rec = ds.records[idx]
    hm = load_motion(rec)
    save_motion(rec.motion, hm.motion, hm.valid, hm.joints * 1.1)
    item = ds[idx]
    assert item["joints"] is not None and item["num_chunks"] == 3
    return item


# ---------------------------------------------------------------------- 1. block attention in motion chunks
def _hidden(bb, ids, pixels):
    with torch.no_grad():
        return bb(ids[None], torch.ones(1, ids.numel(), dtype=torch.long), pixels)[0]


def test_masked_chunk_tokens_see_each_other_and_the_prefix_stays_causal():
    torch.manual_seed(0)
    bb = JalaBackbone.build(BackboneConfig(preset="tiny"), MotionVocabConfig(), load_weights=False).eval()
    v = bb.motion
    history = v.wrap_chunk(torch.arange(64), torch.arange(64) + 100)
    ids = bb.encode_prompt(INSTR, num_views=1, num_latents=0, motion_ids=torch.cat([history, v.masked_chunk()]))
    pixels = torch.randn(1, 3, bb.image_size, bb.image_size)
    target = (ids == v.mask_id).nonzero().flatten()
    target_open = int(target[0]) - 1  # its <mot>
    revealed = ids.clone()
    revealed[target[100]] = v.first_code_id + 7  # reveal a late token of the masked chunk
    history_body = (ids == v.mot_start).nonzero().flatten()[0] + 1
    changed_history = ids.clone()
    changed_history[history_body + 60] = v.first_code_id + 9
    outputs = {}
    for attn in ("sdpa", "eager"):
        bb.model.set_attn_implementation(attn)
        base, rev, hist = (_hidden(bb, x, pixels) for x in (ids, revealed, changed_history))
        # an earlier masked position of the same chunk sees the later token (bidirectional inside the chunk)
        assert not torch.allclose(base[target[0]], rev[target[0]], atol=1e-5), attn
        # images, instruction and the earlier chunk do not see anything after them
        torch.testing.assert_close(base[:target_open], rev[:target_open], rtol=0, atol=0)
        # inside the earlier chunk too: its first token sees its 61st; the instruction before it does not
        assert not torch.allclose(base[history_body], hist[history_body], atol=1e-5), attn
        torch.testing.assert_close(base[:history_body - 1], hist[:history_body - 1], rtol=0, atol=0)
        outputs[attn] = base
    torch.testing.assert_close(outputs["sdpa"], outputs["eager"], rtol=1e-4, atol=1e-5)


def test_predict_post_training_pretraining_and_generation_all_use_the_block_mask(policy, obs, tokenizer):
    from training.generate import MCPConfig, generate_chunk
    from training.pretrain import PretrainConfig
    from training.pretrain.data import Collator, SequenceBuilder, SyntheticTokenDataset
    from training.pretrain.model import JalaPretrainModel

    masks = []

    def spy(_module, _args, kwargs):
        masks.append(kwargs["attention_mask"])

    def used_block_mask(model, run) -> bool:
        masks.clear()
        handle = model.backbone.model.model.language_model.register_forward_pre_hook(spy, with_kwargs=True)
        try:
            run()
        finally:
            handle.remove()
        return bool(masks) and all(m.ndim == 4 for m in masks)

    img, q = obs
    assert used_block_mask(policy, lambda: policy.predict(img, INSTR, q, seed=0))
    images = torch.from_numpy(img)[None, None]
    assert used_block_mask(policy, lambda: policy.compute_loss(images, [INSTR], torch.tensor(q[None]),
                                                               torch.tensor(q[None, None]).repeat(1, 16, 1)))
    assert used_block_mask(policy, lambda: generate_chunk(policy, img, INSTR, tokenizer=tokenizer,
                                                          config=MCPConfig(reveal_ratio=0.5)))
    cfg = PretrainConfig.from_preset("tiny")
    torch.manual_seed(0)
    model = JalaPretrainModel(cfg)
    bb = model.backbone
    builder = SequenceBuilder(bb.motion, bb.tokenizer, bb.num_image_tokens, cfg.model.perceiver.num_latents,
                              cfg.masking)
    batch = Collator(bb.tokenizer.pad_token_id)([builder.build(s) for s in SyntheticTokenDataset(2, seed=1)])
    assert used_block_mask(model, lambda: model(batch))


# ------------------------------------------------------------------- 2. post-training freezes the vision tower
def test_exported_policy_loads_with_vision_frozen(tmp_path):
    from training.pretrain import PretrainConfig
    from training.pretrain.export import export_policy
    from training.pretrain.model import JalaPretrainModel

    torch.manual_seed(0)
    model = JalaPretrainModel(PretrainConfig.from_preset("tiny"))
    vision = model.backbone.model.model.vision_tower
    assert any(p.requires_grad for p in vision.parameters())  # pretraining trains it
    export_policy(model, tmp_path / "policy")
    policy = JalaPolicy.from_pretrained(tmp_path / "policy", device="cpu")
    assert policy.config.backbone.freeze_vision
    inner = policy.backbone.model.model
    assert not any(p.requires_grad for p in inner.vision_tower.parameters())
    assert not any(p.requires_grad for p in inner.multi_modal_projector.parameters())
    assert any(p.requires_grad for p in inner.language_model.parameters())
    assert any(p.requires_grad for p in vision.parameters())  # the pretraining model itself is left as it was


# ----------------------------------------------------------- 3. generation conditions as pretraining trained
def test_generation_windows_are_the_training_sequences(policy, tokenizer, two_hand_item, monkeypatch):
    """Every chunk generate_for_dataset decodes is fed the training sequence of the same window with that chunk
    as a fully masked target (cut after it), the window's first frame, and the target hand's state latents."""
    from training.generate import MCPConfig, generate_for_dataset
    from training.pretrain.adapter import token_sample
    from training.pretrain.config import MaskingConfig
    from training.pretrain.data import SequenceBuilder, chunk_order

    bb = policy.backbone
    vocab = bb.motion
    first_passes, images, hands = [], [], []

    def spy_forward(_module, args, _kwargs):
        ids = args[0][0].cpu()
        if int((ids == vocab.mask_id).sum()) == 128:  # the first pass of a chunk: its target fully masked
            first_passes.append(tuple(ids.tolist()))

    def spy_perceiver(_module, args):
        hands.append(int(torch.as_tensor(args[2]).flatten()[0]))

    preprocess = bb.preprocess_images

    def spy_images(x):
        images.append(x.clone())
        return preprocess(x)

    monkeypatch.setattr(bb, "preprocess_images", spy_images)
    handles = [bb.register_forward_pre_hook(spy_forward, with_kwargs=True),
               policy.state_perceiver.register_forward_pre_hook(spy_perceiver)]
    try:
        generate_for_dataset(policy, tokenizer, _OneSample(two_hand_item), max_chunks=2,
                             config=MCPConfig(reveal_ratio=0.5))
    finally:
        for h in handles:
            h.remove()

    sample = token_sample(two_hand_item, 0, tokenizer)
    builder = SequenceBuilder(vocab, bb.tokenizer, bb.num_image_tokens, policy.config.perceiver.num_latents,
                              MaskingConfig(), prompt_template=policy.config.prompt_template)
    order = [c for c in chunk_order(sample["hand_mask"]) if c[0] < 2]
    assert order == [(0, 0), (0, 1), (1, 0), (1, 1)]
    expected = []
    for k in range(len(order)):
        built = next(b for b in (builder.build(sample, e) for e in range(500)) if b["target_chunk"] == k)
        body = built["align_positions"][0]
        ids = built["input_ids"][: int(body[-1]) + 2].clone()  # through the target's </mot>
        ids[body] = vocab.mask_id
        expected.append(tuple(ids.tolist()))
        assert built["state_hand"] == order[k][1]
    assert sorted(first_passes) == sorted(expected)
    assert sorted(hands) == sorted(h for _, h in order)
    first_frame = two_hand_item["frames"][0]
    assert images and all(torch.equal(x.reshape(first_frame.shape), first_frame) for x in images)
    # the generation window of the builder is that very sequence
    for k in range(len(order)):
        window = builder.generation_window(sample, k)
        assert tuple(window["input_ids"].tolist()) == expected[k]
        assert (window["input_ids"][window["target_positions"]] == vocab.mask_id).all()
        assert window["state_hand"] == order[k][1] and torch.equal(window["image"], first_frame)


# ---------------------------------------------------------------------- 4. hand metrics compare like with like
def test_generated_ground_truth_joints_come_from_the_same_skeleton_as_the_prediction(policy, tokenizer,
                                                                                       two_hand_item):
    from training.generate import MCPConfig, generate_for_dataset

    pred, gt = generate_for_dataset(policy, tokenizer, _OneSample(two_hand_item), max_chunks=1,
                                    config=MCPConfig(reveal_ratio=1.0))
    skel = (HandSkeleton(hand="left"), HandSkeleton(hand="right"))
    for side in (pred, gt):
        fk = np.stack([skel[h].joints(m.astype(np.float64)) for h, m in zip(side["hand"], side["motion"])])
        np.testing.assert_allclose(side["joints"], fk, atol=1e-6)
    stored = np.stack([two_hand_item["joints"][h, 0].numpy() for h in gt["hand"]])
    assert np.abs(gt["joints"] - stored).max() > 1e-3  # the dataset's own (larger) joints are not used
    assert str(pred["joint_source"]) == str(gt["joint_source"]) and "FK skeleton" in str(gt["joint_source"])


def test_metrics_refuse_mixed_joint_sources_and_name_the_source(tmp_path):
    from rich.console import Console

    from training.metrics import evaluate_files, evaluate_motion, format_table

    motion = np.zeros((2, 15, 99))
    motion[..., :96] = np.tile([1.0, 0, 0, 0, 1, 0], 16)
    motion[..., 96:] = [0.0, 0.0, 0.5]
    joints = np.stack([HandSkeleton(hand="right").joints(m) for m in motion]) * 1.1
    ids, domain = np.array(["a", "b"]), np.array(["lab", "lab"])
    np.savez(tmp_path / "gt.npz", ids=ids, domain=domain, joints=joints, joint_source=np.array("MANO joints"))
    np.savez(tmp_path / "pred.npz", ids=ids, domain=domain, motion=motion)
    with pytest.raises(ValueError, match="skeleton mismatch"):
        evaluate_files(tmp_path / "pred.npz", tmp_path / "gt.npz")
    np.savez(tmp_path / "gt_fk.npz", ids=ids, domain=domain, motion=motion)
    res = evaluate_files(tmp_path / "pred.npz", tmp_path / "gt_fk.npz")
    assert res["all"]["MPJPE"] == pytest.approx(0.0, abs=1e-9)
    console = Console(record=True, width=200)
    console.print(format_table(res))
    assert "joints of prediction and ground truth: FK skeleton" in console.export_text()
    text = Console(record=True, width=200)
    text.print(format_table(evaluate_motion(joints, joints, domain, joint_source="MANO joints")))
    assert "MANO joints" in text.export_text()


# ----------------------------------------------------------------- 5. GR00T N1.5 timesteps, head width presets
def _head() -> FlowMatchingActionHead:
    torch.manual_seed(0)
    return FlowMatchingActionHead(ActionHeadConfig(num_layers=2, num_heads=4, hidden_size=64), context_dim=16)


def test_training_times_follow_gr00t_n15_mapping():
    head = _head()
    t = head.sample_time(10000, "cpu", torch.Generator().manual_seed(0))
    s = torch.rand(10000, generator=torch.Generator().manual_seed(0)).pow(1 / 1.5)  # Beta(1.5, 1) by inverse CDF
    torch.testing.assert_close(t, (0.999 - s) / 0.999)
    torch.manual_seed(0)
    t = head.sample_time(100000, "cpu")  # Beta sampling: GR00T's t reaches a sliver below 0
    assert (t < 0).any() and t.min() >= -0.001 / 0.999 - 1e-7 and t.max() <= 1.0
    # configs written before the field took GR00T's name still load
    old = {**JalaPolicyConfig.from_preset("tiny").to_dict()}
    old["action_head"] = {k: v for k, v in old["action_head"].items() if k != "noise_s"} | {"t_max": 0.99}
    assert JalaPolicyConfig.from_dict(old).action_head.noise_s == 0.99


def test_times_below_zero_use_the_first_timestep_bucket():
    head = _head()
    for m in head.modules():  # AdaLN starts at zero (time-independent): give the time a say
        if hasattr(m, "to_scale_shift"):
            torch.nn.init.normal_(m.to_scale_shift.weight, std=0.5)
    x = torch.randn(1, 16, 13)
    state = torch.randn(1, 13)
    kv = head.prepare_context(torch.randn(1, 5, 16))
    with torch.no_grad():
        at_zero = head.velocity(x, torch.tensor([0.0]), state, kv)
        below = head.velocity(x, torch.tensor([-0.0005]), state, kv)
        later = head.velocity(x, torch.tensor([0.5]), state, kv)
    torch.testing.assert_close(below, at_zero)
    assert not torch.allclose(later, at_zero)


def test_head_presets_paper_width_and_gr00t_n15_width():
    from jala_policy.config import ACTION_HEAD_PRESETS

    paper, groot = ActionHeadConfig.from_preset("paper"), ActionHeadConfig.from_preset("gr00t-n1.5")
    default = ActionHeadConfig()
    assert (default.num_layers, default.num_heads, default.hidden_size) == (16, 32, 2048)  # the paper's number
    assert {k: getattr(default, k) for k in ACTION_HEAD_PRESETS["paper"]} == ACTION_HEAD_PRESETS["paper"]
    assert (groot.num_layers, groot.num_heads, groot.hidden_size // groot.num_heads) == (16, 32, 48)
    with torch.device("meta"):
        sizes = {name: sum(p.numel() for p in FlowMatchingActionHead(c, context_dim=1536).parameters())
                 for name, c in (("paper", paper), ("gr00t", groot))}
    assert 0.93e9 < sizes["paper"] < 0.96e9
    assert 0.52e9 < sizes["gr00t"] < 0.56e9
    with pytest.raises(ConfigError, match="unknown action head preset"):
        ActionHeadConfig.from_preset("gr00t-n2")
    cfg = JalaPolicyConfig.from_preset("internvl3-2b", action_head=groot)
    assert JalaPolicyConfig.from_dict(cfg.to_dict()).action_head.hidden_size == 1536


# ----------------------------------------------------------------- 6. one camera view check, everywhere
def test_view_check_refuses_any_mismatch_with_one_message():
    from jala_policy import check_camera_views

    check_camera_views(2, ["front", "side"])
    for views, cameras in ((1, ["front", "side"]), (2, ["/camera/color"])):
        with pytest.raises(ConfigError, match=rf"the policy takes {views} camera view\(s\) but {len(cameras)} "
                                              rf"camera\(s\) are configured \({cameras[0]}"):
            check_camera_views(views, cameras)


def test_sim_evaluation_refuses_a_one_view_checkpoint_on_two_camera_wipe_board(tmp_path):
    from evaluation.simulated import evaluate

    torch.manual_seed(0)
    JalaPolicy.build(JalaPolicyConfig.from_preset("tiny", num_views=1), device="cpu").save_pretrained(tmp_path / "c")
    with pytest.raises(ValueError, match=r"the policy takes 1 camera view\(s\) but 2 camera\(s\) are configured"):
        evaluate("wipe_board", "seen", str(tmp_path / "c"), episodes=1, seed=0, width=64, height=48,
                 progress=False, device="cpu", max_seconds=0.2)


# --------------------------------------------------------------------------- 7. the embodiment's hand side
def test_state_latents_use_the_configured_hand_in_predict_and_post_training(policy, obs):
    img, q = obs
    assert JalaPolicyConfig().hand_side == "right"  # FR3 + Inspire RH56: one right hand
    left = JalaPolicy(JalaPolicyConfig.from_preset("tiny", hand_side="left"), policy.backbone,
                      policy.texture_encoder, policy.state_perceiver, policy.action_head)
    hands = []
    handle = policy.state_perceiver.register_forward_pre_hook(lambda _m, args: hands.append(args[2]))
    try:
        a_left = left.predict(img, INSTR, q, seed=0).positions
        a_right = policy.predict(img, INSTR, q, seed=0).positions
        images = torch.from_numpy(img)[None, None]
        left.compute_loss(images, [INSTR], torch.tensor(q[None]), torch.tensor(q[None, None]).repeat(1, 16, 1))
    finally:
        handle.remove()
    assert hands == [LEFT_HAND, RIGHT_HAND, LEFT_HAND]
    assert not np.array_equal(a_left, a_right)
    with pytest.raises(ConfigError, match="hand_side"):
        JalaPolicyConfig.from_preset("tiny", hand_side="both")
