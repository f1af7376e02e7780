"""Post-training (training/posttrain): the loader's alignment, the frozen visual modules, the feature cache,
overfitting, DDP (2 gloo processes == 1), exact resume, and the exported checkpoint in the simulated evaluation.

The hand-made dataset is written with the project's LeRobot v3.0 writer. Its values encode time: state[0] is the
frame's timestamp, action[0] the timestamp + 1 s, action[1] the frame index; each frame's image is one flat grey
level that encodes the frame index (video compression keeps a flat frame within a few levels).
"""
from __future__ import annotations

import os

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp

from jala_policy.config import ConfigError
from training.posttrain.config import PostTrainConfig
from training.posttrain.data import DemoChunkDataset, EpisodeRef, load_datasets, split_episodes
from tests.helpers import demo_frame_grey as grey
from tests.helpers import free_port, write_demo_dataset

H, W = 48, 64
TASK = "water the plant"


def write_dataset(root, fps: int, lengths: list[int], **kw):
    return write_demo_dataset(root, fps, lengths, hw=(H, W), task=TASK, **kw)


@pytest.fixture(scope="module")
def demo_dirs(tmp_path_factory):
    base = tmp_path_factory.mktemp("posttrain-data")
    return {"15": write_dataset(base / "fps15", 15, [30, 22, 26]), "30": write_dataset(base / "fps30", 30, [40]),
            "smooth": write_dataset(base / "smooth", 15, [30, 30], smooth=True)}


def tiny_config(out, roots, ema_decay: float = 0.0, **run) -> PostTrainConfig:
    d = PostTrainConfig.from_preset("tiny").to_dict()
    d["data"].update(roots=[str(r) for r in roots], val_fraction=0.34, num_workers=0)
    d["optim"]["ema_decay"] = ema_decay
    d["run"].update(output_dir=str(out), tensorboard=False, **run)
    return PostTrainConfig.from_dict(d)


# ------------------------------------------------------------------------------------------------ data
def test_chunks_states_and_images_line_up_with_the_recorded_frames(demo_dirs):
    ds = load_datasets([demo_dirs["15"]])
    data = DemoChunkDataset(ds, [EpisodeRef(0, 0), EpisodeRef(0, 1)], horizon=16, action_dt=1 / 15)
    assert len(data) == 30 + 22
    for idx in (0, 5, 29, 30 + 10, 30 + 21):
        item = data[idx]
        i = idx if idx < 30 else idx - 30
        n = 30 if idx < 30 else 22
        t = i / 15
        assert item["state"][0] == pytest.approx(t, abs=1e-5)
        # element k (1-based) is the target at t + k / 15: recorded frame i + k, or the last one past the end
        expect_frame = np.minimum(i + np.arange(1, 17), n - 1)
        np.testing.assert_allclose(item["actions"][:, 1].numpy(), expect_frame, atol=1e-4)
        np.testing.assert_array_equal(item["action_mask"].numpy(), i + np.arange(1, 17) <= n - 1)
        assert item["images"].shape == (1, H, W, 3) and item["images"].dtype == torch.uint8
        assert abs(float(item["images"].float().mean()) - grey(i)) < 4, f"frame {idx} is not frame {i}"
        assert item["instruction"] == TASK
    last = data[29]
    assert not last["action_mask"].any()  # the final frame has nothing ahead: all padding, repeating the last action
    np.testing.assert_allclose(last["actions"][:, 0].numpy(), (29 / 15 + 1.0) * np.ones(16), atol=1e-5)


def test_a_30fps_dataset_is_resampled_to_the_15hz_action_rate(demo_dirs):
    ds = load_datasets([demo_dirs["30"]])
    data = DemoChunkDataset(ds, [EpisodeRef(0, 0)], horizon=16, action_dt=1 / 15)
    item = data[3]  # t = 0.1 s
    # action[1] is the frame index at 30 fps: targets at t + k/15 are frames 3 + 2k; past frame 39 padded
    expect = np.minimum(3 + 2 * np.arange(1, 17), 39)
    np.testing.assert_allclose(item["actions"][:, 1].numpy(), expect, atol=1e-4)
    np.testing.assert_array_equal(item["action_mask"].numpy(), 3 + 2 * np.arange(1, 17) <= 39)
    np.testing.assert_allclose(item["actions"][:, 0].numpy(), 0.1 + 1.0 + np.arange(1, 17) / 15, atol=1e-5)


def test_frame_cache_gives_the_decoded_frames(demo_dirs, tmp_path):
    ds = load_datasets([demo_dirs["15"]])
    direct = DemoChunkDataset(ds, [EpisodeRef(0, 2)], horizon=16, action_dt=1 / 15)
    cached = DemoChunkDataset(ds, [EpisodeRef(0, 2)], horizon=16, action_dt=1 / 15, frame_cache_dir=tmp_path)
    for idx in (0, 7, 25):
        assert torch.equal(direct[idx]["images"], cached[idx]["images"])
    assert len(list(tmp_path.rglob("episode_000002.npy"))) == 1


def test_validation_split_holds_out_the_last_episodes():
    assert split_episodes(50, 0.1, 5) == (list(range(45)), list(range(45, 50)))
    assert split_episodes(3, 0.34, 5) == ([0, 1], [2])
    assert split_episodes(1, 0.5, 5) == ([0], [])  # never every episode


def test_episodes_that_run_along_a_joint_limit_are_left_out_with_min_clearance(tmp_path, caplog):
    """data.min_clearance: an episode whose arm actions come closer to the FR3 gate's joint limits is not used for
    training or validation; the others keep their indices, and the log says how many were left out."""
    import logging

    from embodiment import FR3_Q_MAX, READY_Q
    from hardware.franka.safety import ArmSafetyLimits
    from training.posttrain.data import clear_episodes, train_val_split
    from training.posttrain.trainer import PostTrainer
    from training.recording.lerobot_v3 import LeRobotV3Writer, robot_features

    gate_j6 = FR3_Q_MAX[5] - ArmSafetyLimits().position_margin
    root = tmp_path / "ds"
    writer = LeRobotV3Writer.create(root, fps=15, features=robot_features({"camera": (H, W)}), video_codec="h264")
    for e, j6_peak in enumerate([READY_Q[5], gate_j6 - 0.1, READY_Q[5], READY_Q[5]]):  # episode 1: 0.1 rad
        writer.start_episode(TASK)
        for i in range(24):
            arm = np.array(READY_Q) + 0.01 * np.sin(i / 3 + e)
            arm[5] = READY_Q[5] + (j6_peak - READY_Q[5]) * np.sin(np.pi * i / 23)
            action = np.concatenate([arm, np.full(6, 500.0)]).astype(np.float32)
            writer.add_frame({"observation.images.camera": np.full((H, W, 3), grey(i), np.uint8),
                              "observation.state": action, "action": action})
        writer.save_episode()
    writer.close()
    ds = load_datasets([str(root)])
    lines = []
    keep = clear_episodes(ds, 0.3, lines.append)
    assert keep == [[0, 2, 3]] and "left out 1 of 4 episode(s)" in lines[0], (keep, lines)
    assert clear_episodes(ds, 0.05) == [[0, 1, 2, 3]]
    train, val = train_val_split(ds, 0.34, 5, keep)
    assert [r.episode for r in train] == [0, 2] and [r.episode for r in val] == [3]

    cfg = tiny_config(tmp_path / "run", [root])
    cfg.data.min_clearance = 0.3
    with caplog.at_level(logging.INFO, logger="training.posttrain.trainer"):
        trainer = PostTrainer(cfg)
    assert [r.episode for r in trainer.train_data.episodes] == [0, 2]
    assert [r.episode for r in trainer.val_data.episodes] == [3]
    assert "left out 1 of 4 episode(s)" in caplog.text
    cfg.data.min_clearance = 2.0  # no episode keeps 2 rad from every limit
    with pytest.raises(ConfigError, match="min_clearance"):
        PostTrainer(cfg)
    with pytest.raises(ConfigError, match="min_clearance"):
        tiny_config(tmp_path / "bad", [root]).data.__class__(min_clearance=-0.1)
    from training.posttrain.__main__ import configure, parse_args

    assert configure(parse_args(["--config", "tiny", "--min-clearance", "0.3"])).data.min_clearance == 0.3


def test_views_of_different_sizes_or_a_missing_camera_are_refused(demo_dirs, tmp_path):
    ds = load_datasets([demo_dirs["15"]])
    with pytest.raises(ConfigError, match="no camera feature 'observation.images.wrist'"):
        DemoChunkDataset(ds, [EpisodeRef(0, 0)], horizon=16, action_dt=1 / 15,
                         camera_keys=["observation.images.wrist"])
    with pytest.raises(ConfigError, match="not a LeRobot v3.0 dataset"):
        load_datasets([str(tmp_path)])


# ------------------------------------------------------------------------------------------- training
def _visual_params(policy):
    modules = [policy.backbone.model.model.vision_tower, policy.backbone.model.model.multi_modal_projector,
               policy.texture_encoder]
    return {f"{i}.{n}": p for i, m in enumerate(modules) for n, p in m.named_parameters()}


@pytest.mark.parametrize("cache_features", [True, False])
def test_visual_modules_get_no_gradient_and_do_not_change(demo_dirs, tmp_path, cache_features):
    from training.posttrain.trainer import PostTrainer

    cfg = tiny_config(tmp_path, [demo_dirs["15"]], max_steps=3)
    cfg.data.cache_features = cache_features
    trainer = PostTrainer(cfg)
    before = {k: v.detach().clone() for k, v in _visual_params(trainer.policy).items()}
    head_before = [p.detach().clone() for p in trainer.policy.action_head.parameters()]
    micro = [trainer.next_micro_batch() for _ in range(trainer.accum)]
    trainer.forward_backward(micro)
    assert all(p.grad is None and not p.requires_grad for p in _visual_params(trainer.policy).values())
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in trainer.policy.action_head.parameters())
    trainer.optimizer.zero_grad()
    trainer.train(3)
    for k, v in _visual_params(trainer.policy).items():
        assert torch.equal(v, before[k]), k
    assert any(not torch.equal(a, b) for a, b in zip(trainer.policy.action_head.parameters(), head_before))


def test_freeze_vision_false_trains_the_visual_modules_of_an_exported_policy(demo_dirs, tmp_path):
    """An exported policy loads with its vision tower frozen (its config.json says so): ``model.freeze_vision:
    false`` must still make the tower and projector trainable (it was silently ignored when starting from a
    checkpoint); the texture encoder stays frozen."""
    from training.posttrain.trainer import PostTrainer

    PostTrainer(tiny_config(tmp_path / "first", [demo_dirs["15"]], max_steps=1)).train()
    cfg = tiny_config(tmp_path / "second", [demo_dirs["15"]], max_steps=2).to_dict()
    cfg["model"].update(init=str(tmp_path / "first" / "policy"), freeze_vision=False)
    cfg["data"]["cache_features"] = False
    trainer = PostTrainer(PostTrainConfig.from_dict(cfg))
    assert not trainer.policy.config.backbone.freeze_vision
    before = {k: v.detach().clone() for k, v in _visual_params(trainer.policy).items()}
    trainer.forward_backward([trainer.next_micro_batch() for _ in range(trainer.accum)])
    grads = {k: p.grad for k, p in _visual_params(trainer.policy).items()}
    for prefix in ("0.", "1."):  # vision tower, projector
        assert any(g is not None and g.abs().sum() > 0 for k, g in grads.items() if k.startswith(prefix)), prefix
    assert all(g is None for k, g in grads.items() if k.startswith("2."))  # the texture encoder stays frozen
    trainer.optimizer.zero_grad()
    trainer.train(2)
    changed = {k for k, v in _visual_params(trainer.policy).items() if not torch.equal(v, before[k])}
    assert {k.split(".")[0] for k in changed} == {"0", "1"}, sorted(changed)[:5]


def test_cached_features_give_the_loss_of_the_images(demo_dirs, tmp_path):
    from training.posttrain.trainer import PostTrainer

    cached = PostTrainer(tiny_config(tmp_path / "a", [demo_dirs["15"]]))
    cfg = tiny_config(tmp_path / "b", [demo_dirs["15"]])
    cfg.data.cache_features = False
    direct = PostTrainer(cfg)
    a = cached.forward_backward([cached.next_micro_batch()])
    b = direct.forward_backward([direct.next_micro_batch()])
    assert a == pytest.approx(b, rel=1e-5)


def test_loss_falls_tenfold_when_overfitting_a_small_dataset(demo_dirs, tmp_path):
    from training.posttrain.trainer import PostTrainer

    cfg = tiny_config(tmp_path, [demo_dirs["smooth"]], max_steps=300, val_every=1000, save_every=1000)
    cfg.data.val_fraction = 0.0
    cfg.data.frame_stride = 7  # 10 samples of two smooth trajectories, learnt by heart
    cfg.optim.lr, cfg.optim.warmup_ratio = 3e-3, 0.02
    cfg.optim.per_device_batch_size = cfg.optim.global_batch_size = 10
    trainer = PostTrainer(cfg)
    trainer.val_data = trainer.train_data  # validate() on the training samples: the loss at one fixed noise draw
    before = trainer.validate()
    trainer.train()
    after = trainer.validate()
    assert after["val_flow_loss"] < before["val_flow_loss"] / 10, (before["val_flow_loss"], after["val_flow_loss"])
    assert after["val_arm_mae_rad"] < before["val_arm_mae_rad"] / 3


def test_relative_arm_actions_are_normalised_by_the_range_of_the_offsets(demo_dirs, tmp_path):
    from training.posttrain.trainer import PostTrainer

    cfg = tiny_config(tmp_path, [demo_dirs["smooth"]])
    cfg.model.config = {"arm_actions": "relative"}
    trainer = PostTrainer(cfg)
    data = trainer.train_data
    offsets, hand = [], []
    for e, i in data.index:
        actions, mask = data.chunk(int(e), int(i))
        offsets.append((actions[:, :7] - data._state[int(e)][int(i)][:7])[mask])
        hand.append(actions[mask, 7:])
    stats = trainer.policy.normalizer.action
    np.testing.assert_allclose(stats.min[:7], np.concatenate(offsets).min(0), atol=1e-6)
    np.testing.assert_allclose(stats.max[:7], np.concatenate(offsets).max(0), atol=1e-6)
    np.testing.assert_allclose(stats.max[7:], np.concatenate(hand).max(0), atol=1e-6)
    val = trainer.validate()
    assert np.isfinite(val["val_arm_mae_rad"]) and np.isfinite(val["val_flow_loss"])


def test_resume_continues_bit_for_bit(demo_dirs, tmp_path):
    from training.posttrain.trainer import PostTrainer

    straight = PostTrainer(tiny_config(tmp_path / "straight", [demo_dirs["15"]], max_steps=6))
    losses = [s["loss"] for s in straight.train()]
    first = PostTrainer(tiny_config(tmp_path / "resumed", [demo_dirs["15"]], max_steps=6))
    first.train(4)  # stops after step 4, as an interrupted run, leaving the checkpoint of step 4
    resumed = PostTrainer(tiny_config(tmp_path / "resumed", [demo_dirs["15"]], max_steps=6))
    assert resumed.step == 4
    rest = [s["loss"] for s in resumed.train()]
    assert rest == losses[4:]
    for (name, a), b in zip(straight.policy.state_dict().items(), resumed.policy.state_dict().values()):
        assert torch.equal(a, b), name


def test_the_weight_average_follows_the_steps_and_is_what_validation_and_export_use(demo_dirs, tmp_path):
    from jala_policy.policy import JalaPolicy
    from training.posttrain.trainer import PostTrainer

    decay = 0.5
    trainer = PostTrainer(tiny_config(tmp_path / "run", [demo_dirs["15"]], max_steps=3, ema_decay=decay))
    named = {n: p for n, p in trainer.policy.named_parameters() if p.requires_grad}
    expected = {n: p.detach().clone() for n, p in named.items()}
    for _ in range(3):
        trainer.train_step()
        for n, p in named.items():
            expected[n] = decay * expected[n] + (1 - decay) * p.detach()
    raw = {n: p.detach().clone() for n, p in named.items()}
    moved = [n for n in named if not torch.allclose(expected[n], raw[n])]
    assert moved, "training changed no weight: the test shows nothing"
    for n, avg in trainer.ema.state_dict().items():
        torch.testing.assert_close(avg, expected[n], rtol=1e-5, atol=1e-7)

    exported = JalaPolicy.from_pretrained(trainer.export(tmp_path / "policy"), device="cpu").state_dict()
    for n in moved:
        torch.testing.assert_close(exported[n], expected[n], rtol=1e-5, atol=1e-7)
    with trainer.ema.applied():
        averaged_val = trainer._validate(256)
    assert trainer.validate() == averaged_val
    for n, p in named.items():  # training goes on from the raw weights
        assert torch.equal(p.detach(), raw[n]), n


def test_resume_with_a_weight_average_continues_bit_for_bit(demo_dirs, tmp_path):
    from training.posttrain.trainer import PostTrainer

    def config(name):
        return tiny_config(tmp_path / name, [demo_dirs["15"]], max_steps=5, ema_decay=0.9)

    straight = PostTrainer(config("straight"))
    straight.train()
    PostTrainer(config("resumed")).train(3)
    resumed = PostTrainer(config("resumed"))
    assert resumed.step == 3
    resumed.train()
    for (name, a), b in zip(straight.ema.state_dict().items(), resumed.ema.state_dict().values()):
        assert torch.equal(a, b), name
    PostTrainer(tiny_config(tmp_path / "other", [demo_dirs["15"]], max_steps=5)).train(1)
    with pytest.raises(ConfigError, match="without optim.ema_decay"):
        PostTrainer(config("other"))


def test_a_one_view_policy_is_fine_tuned_on_two_views(demo_dirs, tmp_path):
    """The number of views sets the prompt only: a policy exported for one camera starts a two-camera run with
    all its weights, and its export takes two images."""
    from jala_policy.policy import JalaPolicy
    from training.posttrain.trainer import PostTrainer

    one = PostTrainer(tiny_config(tmp_path / "one", [demo_dirs["15"]], max_steps=1))
    one.train()
    two_views = write_dataset(tmp_path / "two-views", 15, [20, 20], views=("front", "side"))
    cfg = tiny_config(tmp_path / "two", [two_views], max_steps=1).to_dict()
    cfg["model"]["init"] = str(tmp_path / "one" / "policy")
    trainer = PostTrainer(PostTrainConfig.from_dict(cfg))
    assert trainer.policy.config.num_views == 2
    start = JalaPolicy.from_pretrained(tmp_path / "one" / "policy", device="cpu").state_dict()
    for name, value in trainer.policy.state_dict().items():
        if not name.startswith("normalizer"):
            assert torch.equal(value, start[name]), name
    trainer.train()
    exported = JalaPolicy.from_pretrained(tmp_path / "two" / "policy", device="cpu")
    assert exported.config.num_views == 2


def test_model_config_changes_how_an_exported_policy_is_meant_and_run_or_is_refused(demo_dirs, tmp_path):
    """Starting from an exported policy, model.config's arm_actions and inference settings take effect (they were
    once silently ignored) and reach the export; a field the checkpoint's weights fix is refused, not ignored."""
    from jala_policy.policy import JalaPolicy
    from training.posttrain.trainer import PostTrainer

    PostTrainer(tiny_config(tmp_path / "first", [demo_dirs["15"]], max_steps=1)).train()
    assert JalaPolicy.from_pretrained(tmp_path / "first" / "policy", device="cpu").config.arm_actions == "absolute"

    def config(name, overrides):
        cfg = tiny_config(tmp_path / name, [demo_dirs["15"]], max_steps=1).to_dict()
        cfg["model"].update(init=str(tmp_path / "first" / "policy"), config=overrides)
        return PostTrainConfig.from_dict(cfg)

    trainer = PostTrainer(config("second", {"arm_actions": "relative", "inference": {"execute_steps": 12}}))
    assert trainer.policy.config.arm_actions == "relative"
    trainer.train()
    exported = JalaPolicy.from_pretrained(tmp_path / "second" / "policy", device="cpu").config
    assert exported.arm_actions == "relative" and exported.inference.execute_steps == 12
    with pytest.raises(ConfigError, match="model.config sets perceiver, which the exported policy"):
        PostTrainer(config("third", {"perceiver": {"num_latents": 3}}))
    # paper.yaml's weight locations, and a fixed field at the checkpoint's own value, start from it unchanged
    first = JalaPolicy.from_pretrained(tmp_path / "first" / "policy", device="cpu").config
    same = PostTrainer(config("fourth", {"backbone": {"weights_dir": "weights/InternVL3-2B-hf"},
                                         "perceiver": {"encoder_weights_dir": "weights/dinov2-base",
                                                       "num_latents": first.perceiver.num_latents}}))
    assert same.policy.config.backbone == first.backbone and same.policy.config.perceiver == first.perceiver


def test_a_checkpoint_of_another_recipe_is_not_resumed(demo_dirs, tmp_path):
    from training.posttrain.trainer import PostTrainer

    PostTrainer(tiny_config(tmp_path, [demo_dirs["15"]], max_steps=2)).train()
    with pytest.raises(ConfigError, match="trained for 2 steps"):
        PostTrainer(tiny_config(tmp_path, [demo_dirs["15"]], max_steps=5))


# ------------------------------------------------------------------------------------------------- DDP
def _grads(module) -> dict[str, torch.Tensor]:
    return {n: p.grad.detach().clone() for n, p in module.named_parameters() if p.grad is not None}


def _ddp_worker(rank: int, world: int, port: int, out_dir: str, roots: list[str]):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), GLOO_SOCKET_IFNAME="lo",
                      RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank), OMP_NUM_THREADS="1")
    torch.set_num_threads(1)
    import torch.distributed as dist

    from training.posttrain.trainer import PostTrainer
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        trainer = PostTrainer(tiny_config(os.path.join(out_dir, "ddp"), roots, max_steps=2))
        loss = trainer.forward_backward([trainer.next_micro_batch() for _ in range(trainer.accum)])
        grads = _grads(trainer.policy)
        trainer.optimizer_step()
        loss2 = trainer.train_step()["loss"]
        if rank == 0:
            torch.save({"losses": [loss, loss2], "grads": grads, "accum": trainer.accum,
                        "params": {k: v.clone() for k, v in trainer.policy.state_dict().items()}},
                       os.path.join(out_dir, "rank0.pt"))
    finally:
        dist.destroy_process_group()


def test_two_gloo_processes_train_like_one(demo_dirs, tmp_path):
    from training.posttrain.trainer import PostTrainer

    roots = [str(demo_dirs["15"])]
    single = PostTrainer(tiny_config(tmp_path / "single", roots, max_steps=2))  # builds the feature cache first
    mp.spawn(_ddp_worker, args=(2, free_port(), str(tmp_path), roots), nprocs=2, join=True)
    ddp = torch.load(tmp_path / "rank0.pt", weights_only=False)
    assert single.accum == 2 and ddp["accum"] == 1  # global batch 8: 1 process x 4 x 2, 2 processes x 4 x 1
    loss = single.forward_backward([single.next_micro_batch() for _ in range(single.accum)])
    grads = _grads(single.policy)
    assert grads.keys() == ddp["grads"].keys() and len(grads) > 10
    for name, g in grads.items():
        assert torch.allclose(g, ddp["grads"][name], rtol=1e-3, atol=1e-7), name
    single.optimizer_step()
    losses = [loss, single.train_step()["loss"]]
    assert losses == pytest.approx(ddp["losses"], rel=1e-5)
    # after two Adam steps (lr 1e-3) the weights agree to float rounding, amplified where Adam divides a
    # gradient near 0 by its own size
    for name, p in single.policy.state_dict().items():
        assert torch.allclose(p, ddp["params"][name], rtol=1e-4, atol=2e-5), name


# ---------------------------------------------------------------------------------------------- export
def test_exported_policy_runs_in_the_simulated_evaluation(demo_dirs, tmp_path):
    from evaluation.simulated import run_episode
    from evaluation.policies import CheckpointPolicy
    from hardware.sim.world import SimWorld, SimWorldConfig
    from training.posttrain.__main__ import main

    out = tmp_path / "run"
    assert main(["--config", "tiny", "--data", str(demo_dirs["15"]), "--output", str(out), "--steps", "2",
                 "--no-progress"]) == 0
    policy_dir = out / "policy"
    assert (policy_dir / "posttrain.json").is_file() and (out / "metrics.jsonl").is_file()
    world = SimWorld(SimWorldConfig(task="water_plant", render_width=W, render_height=H))
    try:
        policy = CheckpointPolicy(policy_dir, world, device="cpu")
        assert policy.policy.config.input_image_hw == (H, W)
        res = run_episode(world, policy, seed=3, max_seconds=1.0)
    finally:
        world.close()
    assert res.chunks >= 1 and 0.0 <= res.completion_ratio <= 1.0


def test_cli_reports_a_bad_config_in_one_line(tmp_path, capsys):
    from training.posttrain.__main__ import main

    assert main(["--config", "tiny", "--data", str(tmp_path / "nowhere"), "--output", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "not a LeRobot v3.0 dataset" in err[0]
