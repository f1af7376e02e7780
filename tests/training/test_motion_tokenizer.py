"""Motion tokenizer (training/tokenizer) and MCP motion generation (training/generate.py)."""
import json

import numpy as np
import pytest
import torch

from jala_policy import JalaPolicy, JalaPolicyConfig
from jala_policy.config import MotionVocabConfig
from jala_policy.motion_tokens import MotionVocabulary
from training.data.dataset import iter_motion_chunks
from training.data.hand import WRIST_TRANS_SLICE, identity_motion, rot6d_is_valid
from training.data.synthetic import generate
from training.generate import MCPConfig, allowed_logit_mask, ensemble_motions, generate_chunk, generate_for_dataset
from training.tokenizer import MotionTokenizer, MotionTokenizerConfig, TokenizerConfigError
from training.tokenizer.evaluate import reconstruction_metrics
from training.tokenizer.train import main as train_main
from training.tokenizer.train import train_tokenizer


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("tok_data")
    generate(root, 10, num_frames=45, image_size=32, video_only_fraction=0.2, wild_fraction=0.5, seed=5)
    return root


@pytest.fixture(scope="module")
def chunks(data_dir):
    return iter_motion_chunks(data_dir, stride=5, splits=None)


@pytest.fixture(scope="module")
def trained(chunks):
    """A tiny tokenizer after a short CPU run: auto-encoder warm-up, then quantised steps."""
    tok, history = train_tokenizer(chunks, MotionTokenizerConfig.tiny(), steps=220, warmup_ae_steps=170,
                                   batch_size=32, lr=5e-3, seed=0)
    return tok, history


def test_token_factorisation_matches_the_vocabulary():
    cfg = MotionTokenizerConfig()
    vocab = MotionVocabConfig()
    assert cfg.latent_steps == 4 and cfg.tokens == 2 * 4 * 8 == vocab.tokens_per_part == 64
    assert cfg.num_quantizers * cfg.codebook_size == vocab.codes_per_part == 4096
    depth = cfg.position_depth()
    assert depth.tolist()[:10] == [0, 1, 2, 3, 4, 5, 6, 7, 0, 1]
    allowed = cfg.allowed_codes()
    assert allowed.shape == (64, 4096) and (allowed.sum(1) == 512).all()
    assert allowed[9, 512] and not allowed[9, 511] and not allowed[9, 1024]
    # the full-size model (width 512, Being-H0's sizes) gives the same token layout
    tok = MotionTokenizer(cfg).eval()
    w, f = tok.encode(np.stack([identity_motion(15), identity_motion(15, (0.1, 0.0, 0.4))]))
    assert w.shape == f.shape == (2, 64) and torch.equal(w // 512, (torch.arange(64) % 8).expand(2, -1))
    with pytest.raises(TokenizerConfigError, match="= 32 tokens"):
        MotionTokenizerConfig(num_quantizers=4, codebook_size=1024)
    with pytest.raises(TokenizerConfigError, match="2048 codes"):
        MotionTokenizerConfig(codebook_size=256)


def test_encode_gives_64_plus_64_ids_in_range_and_round_trips(trained, chunks):
    tok, history = trained
    assert history[-1]["loss"] < 0.5 * history[0]["loss"]
    w, f = tok.encode(chunks[0])
    assert w.shape == (64,) and f.shape == (64,) and w.dtype == torch.long
    for ids in (w, f):
        assert int(ids.min()) >= 0 and int(ids.max()) < 4096
        # a position of depth q holds a code of layer q
        assert torch.equal(ids // 512, torch.arange(64) % 8)
    wb, fb = tok.encode(chunks[:5])
    assert wb.shape == (5, 64) and torch.equal(wb[0], w) and torch.equal(fb[0], f)

    recon = tok.decode(wb, fb)
    assert recon.shape == (5, 15, 99)
    assert rot6d_is_valid(recon[..., :96].reshape(-1, 16, 6).numpy()).all()
    m = reconstruction_metrics(chunks, tok.reconstruct(chunks))
    # baseline: the mean chunk (what a tokenizer that learned nothing would give)
    base = reconstruction_metrics(chunks, np.broadcast_to(chunks.mean(0), chunks.shape))
    assert m["wrist_trans_mm"] < 0.4 * base["wrist_trans_mm"] and m["wrist_trans_mm"] < 60
    assert m["wrist_rot_deg"] < 0.3 * base["wrist_rot_deg"] and m["wrist_rot_deg"] < 12
    assert m["finger_rot_deg"] < 0.6 * base["finger_rot_deg"] and m["finger_rot_deg"] < 10
    assert m["mpjpe_mm"] < 0.4 * base["mpjpe_mm"]


def test_decode_rejects_malformed_ids(trained):
    tok, _ = trained
    w = torch.arange(64) % 8 * 512
    with pytest.raises(ValueError, match="lie in"):
        tok.decode(w + 4096, w)
    with pytest.raises(ValueError, match="quantizer depths"):
        tok.decode(torch.zeros(64, dtype=torch.long) + 512, w)  # depth-1 code at a depth-0 position
    with pytest.raises(ValueError, match=r"\(64,\)"):
        tok.decode(w[:10], w)
    with pytest.raises(ValueError, match="15, 99"):
        tok.encode(np.zeros((14, 99)))
    with pytest.raises(ValueError, match="NaN"):
        tok.encode(np.full((15, 99), np.nan))


def test_save_load_and_vocabulary_mapping(trained, chunks, tmp_path):
    tok, _ = trained
    tok.save(tmp_path / "tok")
    assert json.loads((tmp_path / "tok" / "config.json").read_text())["width"] == 64
    tok2 = MotionTokenizer.load(tmp_path / "tok")
    w, f = tok.encode(chunks[:3])
    w2, f2 = tok2.encode(chunks[:3])
    assert torch.equal(w, w2) and torch.equal(f, f2)
    assert torch.allclose(tok.decode(w, f), tok2.decode(w2, f2), atol=1e-6)
    vocab = MotionVocabulary(base_id=1000)
    ids = MotionTokenizer.to_vocab_ids(vocab, w[0], f[0])
    assert ids.shape == (130,) and ids[0] == vocab.mot_start and ids[-1] == vocab.mot_end
    assert torch.equal(vocab.ids_to_codes(ids[1:65], "wrist"), w[0])
    assert torch.equal(vocab.ids_to_codes(ids[65:129], "finger"), f[0])
    with pytest.raises(FileNotFoundError, match="model.safetensors"):
        (tmp_path / "tok" / "model.safetensors").unlink()
        MotionTokenizer.load(tmp_path / "tok")


def test_train_cli_writes_a_loadable_tokenizer(data_dir, tmp_path, capsys):
    out = tmp_path / "cli_tok"
    assert train_main(["--data", str(data_dir), "--out", str(out), "--config", "tiny", "--steps", "3",
                       "--batch-size", "8", "--log-every", "0"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["split"] == "test" and metrics["mpjpe_mm"] > 0
    assert MotionTokenizer.load(out).config.width == 64
    assert train_main(["--data", str(tmp_path / "nothing"), "--out", str(out)]) == 2


# ------------------------------------------------------------------------------------------------ MCP
@pytest.fixture(scope="module")
def policy():
    torch.manual_seed(0)
    return JalaPolicy.build(JalaPolicyConfig.from_preset("tiny"), device="cpu", dtype=torch.float32)


def test_mcp_fills_every_masked_position_with_a_valid_code(policy, trained):
    tok, _ = trained
    img = np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    prev = [tok.encode(np.asarray(iter_chunk)) for iter_chunk in np.zeros((0, 15, 99))]
    res = generate_chunk(policy, img, "move the right hand left", previous=prev, tokenizer=tok,
                         config=MCPConfig(reveal_ratio=0.05, num_rounds=1))
    assert res.passes == 19  # ceil(128 / ceil(0.05 * 128))
    assert (res.reveal_pass >= 0).all() and res.reveal_pass.max() == 18
    assert torch.bincount(res.reveal_pass[0]).tolist() == [7] * 18 + [2]
    vocab = policy.backbone.motion
    assert res.ids.shape == (1, 130) and not (res.ids == vocab.mask_id).any()
    assert vocab.is_motion_code(res.ids[0, 1:129]).all()
    assert torch.equal(vocab.ids_to_codes(res.ids[0, 1:65], "wrist"), res.wrist_codes[0])
    for codes in (res.wrist_codes[0], res.finger_codes[0]):
        assert int(codes.min()) >= 0 and int(codes.max()) < 4096
        assert torch.equal(codes // 512, torch.arange(64) % 8)
    assert res.motion.shape == (15, 99) and torch.isfinite(res.motion).all()
    assert torch.allclose(res.motion, tok.decode(res.wrist_codes[0], res.finger_codes[0]))


def test_mcp_with_history_and_ensembled_rounds(policy, trained, chunks):
    tok, _ = trained
    img = np.random.default_rng(1).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    prev = [tok.encode(chunks[0]), tok.encode(chunks[1])]
    cfg = MCPConfig(reveal_ratio=0.25, num_rounds=3, temperature=1.0, order_noise=1.0, seed=0)
    res = generate_chunk(policy, img, "pick up the cup", previous=prev, tokenizer=tok, hand=0, config=cfg)
    assert res.passes == 4 and res.wrist_codes.shape == (3, 64) and res.round_motions.shape == (3, 15, 99)
    assert not torch.equal(res.reveal_pass[0], res.reveal_pass[1])  # rounds decode in different orders
    ens = ensemble_motions(res.round_motions)
    assert torch.allclose(res.motion, ens)
    assert torch.allclose(res.motion[:, WRIST_TRANS_SLICE], res.round_motions[:, :, WRIST_TRANS_SLICE].mean(0))
    assert rot6d_is_valid(res.motion[:, :96].reshape(-1, 16, 6).numpy()).all()
    # the same history given as wrapped backbone ids gives the same first round
    vocab = policy.backbone.motion
    prev_ids = torch.cat([vocab.wrap_chunk(w, f) for w, f in prev])
    res2 = generate_chunk(policy, img, "pick up the cup", previous=prev_ids, tokenizer=tok, hand=0, config=cfg)
    assert torch.equal(res2.wrist_codes[0], res.wrist_codes[0])
    with pytest.raises(ValueError, match="wrapped motion chunks"):
        generate_chunk(policy, img, "x", previous=torch.tensor([1, 2, 3]), tokenizer=tok)
    with pytest.raises(ValueError, match="uint8"):
        generate_chunk(policy, img.astype(np.float32), "x", tokenizer=tok)


def test_logit_mask_allows_only_the_positions_part_and_depth():
    m = allowed_logit_mask(MotionTokenizerConfig())
    assert m.shape == (128, 8192)
    assert m[0, 0] and m[0, 511] and not m[0, 512] and not m[0, 4096]
    assert m[64, 4096] and not m[64, 0] and m[127, 4096 + 7 * 512]


def test_generate_for_dataset_evaluates_per_split(policy, trained, data_dir):
    from training.data import DataConfig, HandVideoDataset
    from training.metrics import evaluate_motion

    tok, _ = trained
    ds = HandVideoDataset(DataConfig(root=str(data_dir), image_size=(32, 32), splits=("test",)))
    pred, gt = generate_for_dataset(policy, tok, ds, max_chunks=1, config=MCPConfig(reveal_ratio=0.5))
    n = len(pred["ids"])
    assert n >= 1 and pred["joints"].shape == (n, 15, 21, 3) and gt["joints"].shape == (n, 15, 21, 3)
    res = evaluate_motion(pred["joints"], gt["joints"], gt["domain"])
    assert set(res) >= {"all"} and np.isfinite(res["all"]["MPJPE"])
