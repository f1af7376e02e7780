"""JALA pretraining (training/pretrain): hybrid masking, losses, decoupled EMA, DDP equivalence, exact resume,
LR schedule, config and CLI. Everything runs the tiny random-weight model on synthetic token data on CPU."""
from __future__ import annotations

import copy
import math
import os
import socket

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp

from jala_policy.config import ConfigError
from training.pretrain import PretrainConfig, PretrainTrainer, WarmupCosine
from training.pretrain.checkpoint import latest_checkpoint, save_checkpoint
from training.pretrain.config import PAPER_TARGET_MASK_RATIOS, MaskingConfig
from training.pretrain.data import (IGNORE_INDEX, LEFT, RIGHT, Collator, SequenceBuilder, SyntheticTokenDataset,
                                    chunk_order)
from training.pretrain.masking import hybrid_masks
from training.pretrain.model import JalaPretrainModel

TOL = dict(rtol=1e-4, atol=1e-6)


def tiny_config(tmp_path=None, **run) -> PretrainConfig:
    cfg = PretrainConfig.from_preset("tiny")
    cfg.data.num_samples = 32
    cfg.optim.per_device_batch_size = 2
    cfg.optim.global_batch_size = 8
    cfg.run.max_steps = 4
    cfg.run.progress = False
    cfg.run.tensorboard = False
    cfg.run.resume = None
    cfg.run.save_every = 1000
    if tmp_path is not None:
        cfg.run.output_dir = str(tmp_path)
    for k, v in run.items():
        setattr(cfg.run, k, v)
    return cfg


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tests/conftest.py


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return JalaPretrainModel(tiny_config())


@pytest.fixture(scope="module")
def builder(model):
    bb = model.backbone
    cfg = model.config
    return SequenceBuilder(bb.motion, bb.tokenizer, bb.num_image_tokens, cfg.model.perceiver.num_latents,
                           cfg.masking, seed=0)


def _samples(n=16, video_only_fraction=0.5, chunks=2):
    ds = SyntheticTokenDataset(n, num_time_chunks=chunks, video_only_fraction=video_only_fraction, seed=3)
    return [ds[i] for i in range(n)]


# ---------------------------------------------------------------------------------------------- masking
def test_paper_target_ratio_set():
    assert PAPER_TARGET_MASK_RATIOS == (0.05, 0.15, 0.25, 0.35, 0.45, 0.55, 0.65, 0.75, 0.85, 0.95, 1.0)


def test_hybrid_masking_statistics_match_a3():
    cfg = MaskingConfig()
    rng = np.random.default_rng(0)
    n_chunks, n_tok, draws = 4, 128, 4000
    targets, target_counts, later = [], [], []
    for _ in range(draws):
        cm = hybrid_masks(n_chunks, n_tok, True, cfg, rng)
        assert 0 <= cm.target < n_chunks and len(cm.masks) == n_chunks
        for i in range(cm.target):
            assert not cm.masks[i].any(), "chunks before the target must stay intact"
        k = int(cm.masks[cm.target].sum())
        assert k == max(1, round(cm.ratio * n_tok))
        targets.append(cm.target)
        target_counts.append(cm.ratio)
        later.extend(float(cm.masks[i].mean()) for i in range(cm.target + 1, n_chunks))
    # exactly one target per sequence, drawn uniformly over the chunks
    freq = np.bincount(targets, minlength=n_chunks) / draws
    assert np.allclose(freq, 1 / n_chunks, atol=0.03), freq
    # target ratio uniform over the 11 values
    values, counts = np.unique(target_counts, return_counts=True)
    assert tuple(np.round(values, 2)) == PAPER_TARGET_MASK_RATIOS
    assert np.allclose(counts / draws, 1 / 11, atol=0.025), counts / draws
    # later chunks: ~5 % of their tokens
    assert abs(np.mean(later) - 0.05) < 0.005, np.mean(later)


def test_video_only_samples_are_fully_masked():
    cm = hybrid_masks(3, 128, False, MaskingConfig(), np.random.default_rng(1))
    assert all(m.all() for m in cm.masks) and cm.ratio == 1.0


def test_sequence_layout_labels_and_alignment_positions(builder, model):
    vocab = model.backbone.motion
    sample = next(s for s in _samples(40, 0.3) if s["has_motion"] and s["hand_mask"].all())
    order = chunk_order(sample["hand_mask"])
    assert order == [(0, LEFT), (0, RIGHT), (1, LEFT), (1, RIGHT)]  # left/right interleaved in time
    built = builder.build(sample, epoch=0)
    ids, labels = built["input_ids"], built["labels"]
    starts = (ids == vocab.mot_start).nonzero().flatten()
    assert len(starts) == 4 and int((ids == vocab.latent_id).sum()) == 4
    assert int((ids == model.backbone.image_token_id).sum()) == model.backbone.num_image_tokens
    for c, (t, hand) in enumerate(order):
        body = slice(int(starts[c]) + 1, int(starts[c]) + 129)
        original = vocab.wrap_chunk(sample["wrist_codes"][t, hand], sample["finger_codes"][t, hand])[1:-1]
        masked = ids[body] == vocab.mask_id
        # masked positions carry the original code as label, visible ones keep the original id and no label
        assert torch.equal(labels[body][masked], original[masked] - vocab.first_code_id)
        assert torch.equal(ids[body][~masked], original[~masked])
        assert (labels[body][~masked] == IGNORE_INDEX).all()
        if c < built["target_chunk"]:
            assert not masked.any()
        if c == built["target_chunk"]:
            assert int(masked.sum()) == max(1, round(built["target_ratio"] * 128))
            assert torch.equal(built["align_positions"][0], torch.arange(body.start, body.stop))
            assert built["align_hand"].tolist() == [hand] and built["state_hand"] == hand
            assert np.array_equal(built["align_first"][0].numpy(), sample["frames"][t])
            assert np.array_equal(built["align_second"][0].numpy(), sample["frames"][t + 1])
    assert (labels[: int(starts[0])] == IGNORE_INDEX).all()
    # the same (epoch, index) always gives the same mask, another epoch another one
    assert torch.equal(builder.build(sample, 0)["input_ids"], ids)
    assert any(not torch.equal(builder.build(sample, e)["input_ids"], ids) for e in (1, 2, 3))


# ----------------------------------------------------------------------------------------------- losses
def test_video_only_samples_give_alignment_but_no_mcp_gradient(builder, model):
    samples = _samples(20, 0.5)
    lab = next(s for s in samples if s["has_motion"])
    wild = next(s for s in samples if not s["has_motion"])
    pad = model.backbone.tokenizer.pad_token_id
    batch = Collator(pad)([builder.build(lab), builder.build(wild)])
    assert (batch["labels"][1] == IGNORE_INDEX).all()
    captured = {}

    def hook(_module, _inp, out):
        out.retain_grad()
        captured["emb"] = out

    h = model.backbone.model.get_input_embeddings().register_forward_hook(hook)
    try:
        model.zero_grad()
        out = model(batch)
        mcp_grad = torch.autograd.grad(out["mcp_sum"], captured["emb"], retain_graph=True)[0]
        align_grad = torch.autograd.grad(out["align_sum"], captured["emb"])[0]
    finally:
        h.remove()
    assert out["mcp_count"] > 0 and torch.isfinite(out["mcp_sum"])
    assert mcp_grad[0].abs().sum() > 0
    assert mcp_grad[1].abs().max() == 0, "a video-only sample must not receive any MCP gradient"
    assert align_grad[1].abs().sum() > 0, "a video-only sample must be trained by the alignment loss"
    only_wild = model(Collator(pad)([builder.build(wild)]))
    assert only_wild["mcp_count"] == 0 and float(only_wild["mcp_sum"].detach()) == 0.0
    assert float(only_wild["align_sum"].detach()) > 0 and only_wild["align_count"] == 1


def test_mcp_of_a_lab_sample_does_not_depend_on_batch_mates(builder, model):
    samples = _samples(20, 0.5)
    lab = next(s for s in samples if s["has_motion"])
    wild = [s for s in samples if not s["has_motion"]][:2]
    pad = model.backbone.tokenizer.pad_token_id
    with torch.no_grad():
        alone = model(Collator(pad)([builder.build(lab)]))
        mixed = model(Collator(pad)([builder.build(lab)] + [builder.build(w) for w in wild]))
    assert torch.allclose(alone["mcp_sum"], mixed["mcp_sum"], rtol=1e-4)
    assert int(alone["mcp_count"]) == int(mixed["mcp_count"])


# -------------------------------------------------------------------------------------------------- EMA
def test_training_step_moves_perceivers_as_eq_6_and_7(tmp_path):
    cfg = tiny_config(tmp_path)
    trainer = PretrainTrainer(cfg)
    lap, lsp = trainer.model.lap, trainer.model.lsp
    with torch.no_grad():  # make LAP and LSP differ so that the EMA is visible
        for p in lsp.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    before = {k: v.detach().clone() for k, v in trainer.model.state_dict().items()}
    trainer.train_step()
    after = trainer.model.state_dict()
    a = cfg.loss.ema_alpha
    lsp_after = {n: after[f"lsp.{n}"] for n, _ in lsp.named_parameters()}
    for name, _ in lap.named_parameters():
        old, new = before[f"lap.{name}"], after[f"lap.{name}"]
        if name == "queries":
            # LAP queries: trained by the alignment loss, never pulled towards LSP
            assert not torch.allclose(new, old)
        else:
            # eq. 6: LAP backbone <- a * LAP backbone + (1 - a) * LSP backbone (LSP after its optimiser step)
            assert torch.allclose(new, a * old + (1 - a) * lsp_after[name], **TOL), name
    # eq. 7: LSP queries <- a * LSP queries + (1 - a) * LAP queries (LAP queries after the optimiser step)
    assert torch.allclose(after["lsp.queries"], a * before["lsp.queries"] + (1 - a) * after["lap.queries"], **TOL)
    # the LSP backbone is trained by gradient, not pulled towards LAP
    assert not lsp.queries.requires_grad and all(not p.requires_grad for p in lap.backbone_parameters())
    trained = [n for n, p in lsp.named_parameters() if n != "queries" and "self_attn.norm_kv" not in n]
    assert all(dict(lsp.named_parameters())[n].requires_grad for n in trained) and lap.queries.requires_grad


def test_ema_update_changes_nothing_but_lap_backbone_and_lsp_queries(model):
    from jala_policy.perceiver import ema_update_perceivers
    m = copy.deepcopy(model)
    with torch.no_grad():
        for p in m.lsp.parameters():
            p.add_(1.0)
    before = {k: v.clone() for k, v in m.state_dict().items()}
    ema_update_perceivers(m.lap, m.lsp, 0.9)
    moved = {k for k, v in m.state_dict().items() if not torch.equal(v, before[k])}
    expected = {f"lap.{n}" for n, _ in m.lap.named_parameters() if n != "queries"} | {"lsp.queries"}
    assert moved == expected


def test_training_reduces_both_losses(tmp_path):
    cfg = tiny_config(tmp_path, max_steps=15)
    cfg.data.num_samples, cfg.data.video_only_fraction = 8, 0.25
    cfg.optim.lr, cfg.optim.warmup_ratio = 3e-3, 0.0
    cfg.optim.per_device_batch_size = cfg.optim.global_batch_size = 8
    hist = PretrainTrainer(cfg).train()
    first, last = hist[0], np.mean([h["mcp"] for h in hist[-3:]])
    assert first["mcp"] == pytest.approx(math.log(8192), abs=0.2)  # chance level over the motion codes
    assert last < first["mcp"] - 0.5
    assert np.mean([h["align"] for h in hist[-3:]]) < 0.6 * first["align"]


# ------------------------------------------------------------------------------------------ LR schedule
def test_lr_schedule_warmup_then_cosine():
    s = WarmupCosine(total_steps=200, warmup_ratio=0.05)
    lrs = np.array([s(i) for i in range(200)])
    assert s.warmup == 10
    assert np.allclose(lrs[:10], np.arange(1, 11) / 10)  # linear warm-up to the peak
    assert lrs[10] == pytest.approx(1.0)
    assert np.all(np.diff(lrs[10:]) <= 1e-12)  # then monotone decay
    assert s(10 + 95) == pytest.approx(0.5, abs=0.01)  # half-way through the cosine
    assert lrs[-1] < 0.001
    floor = WarmupCosine(100, 0.05, min_ratio=0.1)
    assert floor(99) == pytest.approx(0.1, abs=1e-3)


def test_trainer_applies_the_schedule_and_paper_optimiser(tmp_path):
    cfg = tiny_config(tmp_path, max_steps=20)
    cfg.optim.lr = 3e-5
    trainer = PretrainTrainer(cfg)
    g = trainer.optimizer.param_groups[0]
    assert g["betas"] == (0.9, 0.95) and g["weight_decay"] == 0.05
    lrs = []
    for _ in range(3):
        lrs.append(trainer.train_step()["lr"])
        assert trainer.optimizer.param_groups[0]["lr"] == pytest.approx(3e-5 * trainer.schedule(trainer.step))
    assert lrs == pytest.approx([3e-5 * WarmupCosine(20, 0.05)(i) for i in range(3)])
    assert lrs[0] == pytest.approx(3e-5)  # warm-up of round(0.05 * 20) = 1 step


# ------------------------------------------------------------------------------------------------ config
def test_paper_preset_and_yaml(tmp_path):
    cfg = PretrainConfig.from_preset("paper")
    o, loss = cfg.optim, cfg.loss
    assert (o.lr, o.weight_decay, o.betas, o.warmup_ratio, o.grad_clip) == (3e-5, 0.05, (0.9, 0.95), 0.05, 1.0)
    assert (o.per_device_batch_size, o.global_batch_size, loss.align_weight, loss.ema_alpha) == (16, 128, 0.5, 0.999)
    assert o.grad_accum_steps(8) == 1 and o.grad_accum_steps(1) == 8
    with pytest.raises(ConfigError, match="multiple"):
        o.grad_accum_steps(3)
    from pathlib import Path
    shipped = Path(__file__).resolve().parents[2] / "training" / "pretrain" / "configs"
    assert PretrainConfig.load(shipped / "paper.yaml").to_dict() == cfg.to_dict()
    assert PretrainConfig.load(shipped / "tiny.yaml").to_dict() == PretrainConfig.from_preset("tiny").to_dict()
    path = tmp_path / "cfg.yaml"
    path.write_text("preset: tiny\noptim: {lr: 0.002}\nloss: {align_distance: mse}\nrun: {max_steps: 7}\n"
                    "model: {perceiver: {num_latents: 8}}\n")
    loaded = PretrainConfig.load(path)
    assert loaded.optim.lr == 0.002 and loaded.loss.align_distance == "mse" and loaded.run.max_steps == 7
    assert loaded.model.perceiver.num_latents == 8 and loaded.model.backbone.preset == "tiny"
    loaded.dump(tmp_path / "again.yaml")
    assert PretrainConfig.load(tmp_path / "again.yaml").to_dict() == loaded.to_dict()
    path.write_text("optim: {learning_rate: 1}\n")
    with pytest.raises(ConfigError, match="optim"):
        PretrainConfig.load(path)
    path.write_text("model: {perceiver: {num_latents: 7}}\n")
    with pytest.raises(ConfigError, match="latents"):
        PretrainConfig.load(path)


# ------------------------------------------------------------------------------------ resume / checkpoint
def test_exact_resume(tmp_path):
    straight = PretrainTrainer(tiny_config(tmp_path / "a"))
    full = [s["loss"] for s in straight.train()]
    first = PretrainTrainer(tiny_config(tmp_path / "b"))
    part1 = [s["loss"] for s in first.train(num_steps=2)]
    assert latest_checkpoint(first.ckpt_dir).name == "step_00000002.pt"
    del first
    resumed = PretrainTrainer(tiny_config(tmp_path / "b", resume="auto"))
    assert resumed.step == 2
    part2 = [s["loss"] for s in resumed.train()]
    assert part1 + part2 == full, (part1 + part2, full)  # bit-identical losses
    for (name, p), q in zip(straight.model.state_dict().items(), resumed.model.state_dict().values()):
        assert torch.equal(p, q), name


def test_sampler_positions_are_world_size_independent():
    from training.pretrain.data import ResumableDistributedSampler
    ds = list(range(40))
    global_batch, steps_done = 8, 3

    def consumed_and_rest(world):
        seen, rest = set(), set()
        for rank in range(world):
            s = ResumableDistributedSampler(ds, num_replicas=world, rank=rank, shuffle=True, seed=5)
            s.set_epoch(2)
            keys = list(s)
            n = steps_done * global_batch // world  # samples this rank consumed in 3 global steps
            seen |= {i for _, i in keys[:n]}
            s.set_start(n)
            rest |= {i for e, i in s}
            assert all(e == 2 for e, _ in keys)
        return seen, rest

    one, two, four = consumed_and_rest(1), consumed_and_rest(2), consumed_and_rest(4)
    assert one == two == four and len(one[0]) == 24 and not one[0] & one[1]


def test_interrupted_checkpoint_write_keeps_the_previous_one(tmp_path, monkeypatch):
    ok = save_checkpoint(tmp_path, 1, {"step": 1, "w": torch.ones(3)})
    real_save = torch.save

    def crash(obj, f, *a, **k):
        real_save(obj, f, *a, **k)
        f.write(b"partial")
        raise KeyboardInterrupt  # Ctrl-C in the middle of the write

    monkeypatch.setattr(torch, "save", crash)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(tmp_path, 2, {"step": 2, "w": torch.zeros(3)})
    monkeypatch.setattr(torch, "save", real_save)
    assert latest_checkpoint(tmp_path) == ok
    assert torch.load(ok)["step"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["latest", "step_00000001.pt"]  # no temp files left


# ------------------------------------------------------------------------------------------------- DDP
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _grads(model) -> dict[str, torch.Tensor]:
    return {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.grad is not None}


def _ddp_worker(rank: int, world: int, port: int, out_dir: str):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), GLOO_SOCKET_IFNAME="lo",
                      RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank), OMP_NUM_THREADS="1")
    torch.set_num_threads(1)
    import torch.distributed as dist
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        trainer = PretrainTrainer(tiny_config(os.path.join(out_dir, "ddp")))
        micro = [trainer.next_micro_batch() for _ in range(trainer.accum)]
        stats = trainer.forward_backward(micro)
        grads = _grads(trainer.model)
        trainer.optimizer_step()
        stats2 = trainer.train_step()
        if rank == 0:
            torch.save({"stats": stats, "stats2": stats2, "grads": grads, "accum": trainer.accum,
                        "indices": [mb["indices"] for mb in micro],
                        "params": {k: v.clone() for k, v in trainer.model.state_dict().items()}},
                       os.path.join(out_dir, "rank0.pt"))
        else:
            torch.save({"indices": [mb["indices"] for mb in micro]}, os.path.join(out_dir, "rank1.pt"))
    finally:
        dist.destroy_process_group()


def test_two_process_gloo_matches_one_process(tmp_path):
    mp.spawn(_ddp_worker, args=(2, _free_port(), str(tmp_path)), nprocs=2, join=True)
    ddp = torch.load(tmp_path / "rank0.pt", weights_only=False)
    r1 = torch.load(tmp_path / "rank1.pt", weights_only=False)
    single = PretrainTrainer(tiny_config(tmp_path / "single"))
    assert single.accum == 4 and ddp["accum"] == 2  # same global batch of 8: 1 x 2 x 4 vs 2 x 2 x 2
    micro = [single.next_micro_batch() for _ in range(single.accum)]
    seen_single = sorted(torch.cat([mb["indices"] for mb in micro]).tolist())
    seen_ddp = sorted(torch.cat(ddp["indices"] + r1["indices"]).tolist())
    assert seen_single == seen_ddp and len(seen_single) == 8
    stats = single.forward_backward(micro)
    for key in ("loss", "mcp", "align"):
        assert stats[key] == pytest.approx(ddp["stats"][key], rel=1e-5), key
    assert stats["mcp_tokens"] == ddp["stats"]["mcp_tokens"]
    grads = _grads(single.model)
    assert grads.keys() == ddp["grads"].keys()
    for name, g in grads.items():
        assert torch.allclose(g, ddp["grads"][name], rtol=1e-3, atol=1e-6), name
    single.optimizer_step()
    stats2 = single.train_step()
    assert stats2["loss"] == pytest.approx(ddp["stats2"]["loss"], rel=1e-4)
    for name, p in single.model.state_dict().items():
        assert torch.allclose(p, ddp["params"][name], rtol=1e-4, atol=1e-5), name


# -------------------------------------------------------------------------------------------------- CLI
def test_cli_tiny_run_logs_and_checkpoints(tmp_path, capsys):
    from training.pretrain.__main__ import main
    rc = main(["--preset", "tiny", "--output-dir", str(tmp_path), "--max-steps", "2", "--resume", "none",
               "--export-policy"])
    assert rc == 0
    out = capsys.readouterr().out
    assert "done: step 2" in out
    assert latest_checkpoint(tmp_path / "checkpoints").name == "step_00000002.pt"
    assert any((tmp_path / "tensorboard").glob("events.out.tfevents.*"))
    from jala_policy import JalaPolicy
    policy = JalaPolicy.from_pretrained(tmp_path / "policy", device="cpu")
    state = torch.load(latest_checkpoint(tmp_path / "checkpoints"), weights_only=False)["model"]
    assert torch.equal(policy.state_perceiver.queries, state["lsp.queries"])  # the LSP goes to post-training
    assert main(["--config", str(tmp_path / "missing.yaml")]) == 2
    # the paper preset without local weights: a clear error, not a traceback
    assert main(["--preset", "paper", "--output-dir", str(tmp_path / "paper"), "--resume", "none"]) == 2
    assert "InternVL3" in capsys.readouterr().err


# ------------------------------------------------------------------------------ on-disk dataset adapter
def test_adapter_tokenises_the_hand_video_dataset_and_trains(tmp_path):
    from training.data import HandVideoDataset
    from training.data.synthetic import generate
    from training.pretrain.adapter import jala_dataset_and_adapter, load_motion_tokenizer, token_sample

    generate(tmp_path / "ds", 10, num_frames=30, image_size=32, video_only_fraction=0.3, test_fraction=0.0, seed=1)
    cfg = tiny_config(tmp_path / "run", max_steps=1)
    cfg.data = type(cfg.data)(source="jala", root=str(tmp_path / "ds"), image_hw=(32, 32), max_chunks=2)
    with pytest.warns(UserWarning, match="UNTRAINED"):
        tok = load_motion_tokenizer(cfg)
    ds = HandVideoDataset(str(tmp_path / "ds"), image_size=(32, 32))
    kinds = set()
    for i in range(len(ds)):
        item = ds[i]
        s = token_sample(item, i, tok)
        kinds.add(s["has_motion"])
        n = item["num_chunks"]
        assert s["frames"].shape == (n + 1, 32, 32, 3) and s["frames"].dtype == np.uint8
        if s["has_motion"]:
            cv = item["chunk_valid"].numpy()
            assert np.array_equal(s["hand_mask"], cv.T)
            t, hand = chunk_order(s["hand_mask"])[0]
            w, f = tok.encode(item["motion"][hand, t])
            assert np.array_equal(s["wrist_codes"][t, hand], w.numpy())
            assert np.array_equal(s["finger_codes"][t, hand], f.numpy())
        else:
            assert s["hand_mask"][:, RIGHT].all() and not s["hand_mask"][:, LEFT].any() and s["wrist_codes"] is None
    assert kinds == {True, False}
    with pytest.warns(UserWarning, match="UNTRAINED"):
        dataset, adapter = jala_dataset_and_adapter(cfg)
    trainer = PretrainTrainer(cfg, dataset=dataset, adapter=adapter)
    stats = trainer.train_step()
    assert math.isfinite(stats["loss"]) and stats["mcp_tokens"] > 0 and stats["align_chunks"] == 8
