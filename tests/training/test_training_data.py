"""Hand-video data (training/data): format, synthetic generator, Dataset, mixing sampler, clear errors."""
import json
import shutil

import numpy as np
import pytest
import torch

from training.data import (DataConfig, DataFormatError, HandVideoDataset, MixedSampler, collate_samples,
                           iter_motion_chunks, load_index, load_motion, make_loader, validate_dataset)
from training.data.format import save_motion
from training.data.hand import (HandSkeleton, axis_angle_to_matrix, default_rest_offsets, identity_motion,
                                matrix_to_rot6d, rot6d_is_valid, rot6d_to_matrix)
from training.data.synthetic import generate
from training.data.synthetic import main as synthetic_main
from training.data.validate import main as validate_main

N_SAMPLES, N_FRAMES = 16, 45


@pytest.fixture(scope="module")
def dataset_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("synthetic")
    generate(root, N_SAMPLES, num_frames=N_FRAMES, image_size=32, video_only_fraction=0.25, wild_fraction=0.5,
             mp4_fraction=0.1, seed=3)
    return root


@pytest.fixture
def broken_dir(dataset_dir, tmp_path):
    root = tmp_path / "ds"
    shutil.copytree(dataset_dir, root)
    return root


def _records(root):
    return [json.loads(line) for line in (root / "index.jsonl").read_text().splitlines()]


# ------------------------------------------------------------------------------------ rotations / FK
def test_rot6d_round_trip_and_fk_keeps_bone_lengths():
    rng = np.random.default_rng(0)
    r = axis_angle_to_matrix(rng.normal(0, 1.0, (50, 3)))
    np.testing.assert_allclose(rot6d_to_matrix(matrix_to_rot6d(r)), r, atol=1e-12)
    np.testing.assert_allclose(r @ np.swapaxes(r, -1, -2), np.broadcast_to(np.eye(3), r.shape), atol=1e-12)
    assert rot6d_is_valid(matrix_to_rot6d(r)).all()
    assert not rot6d_is_valid(np.array([[1, 0, 0, 2, 0, 0], [0, 0, 0, 0, 1, 0], [np.nan, 0, 0, 0, 1, 0]])).any()
    # identity pose: joints are the rest offsets chained from the wrist translation
    m = identity_motion(1, translation=(0.1, 0.2, 0.5))[0]
    j = HandSkeleton().joints(m)
    off = default_rest_offsets()
    np.testing.assert_allclose(j[0], [0.1, 0.2, 0.5], atol=1e-7)
    np.testing.assert_allclose(j[1], j[0] + off[1], atol=1e-7)
    np.testing.assert_allclose(j[16], j[3] + off[16], atol=1e-7)
    # random rotations move joints but keep every bone length
    m2 = m.copy()
    m2[:96] = matrix_to_rot6d(axis_angle_to_matrix(rng.normal(0, 0.7, (16, 3)))).reshape(96)
    j2 = HandSkeleton().joints(m2)
    from training.data.hand import JOINT_PARENTS
    for k in range(1, 21):
        assert np.linalg.norm(j2[k] - j2[JOINT_PARENTS[k]]) == pytest.approx(np.linalg.norm(off[k]), abs=1e-6)
    assert np.abs(j2 - j).max() > 0.01


# ------------------------------------------------------------------------------------------- dataset
def test_synthetic_dataset_follows_the_format(dataset_dir):
    recs = validate_dataset(dataset_dir, read_frames=True)
    assert len(recs) == N_SAMPLES
    assert {r.domain for r in recs} == {"lab", "wild"}
    assert sum(not r.has_motion for r in recs) == 4
    assert any(r.video.suffix == ".mp4" for r in recs) and {"train", "test"} <= {r.split for r in recs}
    for r in recs:
        if r.has_motion:
            hm = load_motion(r)
            assert hm.motion.shape == (2, N_FRAMES, 99) and hm.joints.shape == (2, N_FRAMES, 21, 3)
            assert rot6d_is_valid(hm.motion[hm.valid][:, :96].reshape(-1, 16, 6)).all()
        else:
            assert r.motion is None


def test_dataset_items_have_documented_shapes(dataset_dir):
    ds = HandVideoDataset(DataConfig(root=str(dataset_dir), image_size=(24, 40), splits=None))
    assert len(ds) == N_SAMPLES
    seen_video_only = seen_motion = seen_mp4 = False
    for i, rec in enumerate(ds.records):
        s = ds[i]
        n = N_FRAMES // 15
        assert s["num_chunks"] == n and s["id"] == rec.id
        assert s["frames"].shape == (n + 1, 24, 40, 3) and s["frames"].dtype == torch.uint8
        assert s["frame_index"].tolist() == [0, 15, 30, 44]
        assert s["domain"] in ("lab", "wild") and s["instruction"]
        seen_mp4 |= rec.video.suffix == ".mp4"
        if s["has_motion"]:
            seen_motion = True
            hm = load_motion(rec)
            assert s["motion"].shape == (2, n, 15, 99) and s["motion"].dtype == torch.float32
            np.testing.assert_array_equal(s["motion"][1, 1].numpy(), hm.motion[1, 15:30])
            np.testing.assert_array_equal(s["motion_valid"].numpy(), hm.valid[:, :45].reshape(2, n, 15))
            assert torch.equal(s["chunk_valid"], s["motion_valid"].all(-1))
            assert s["joints"].shape == (2, n, 15, 21, 3)
        else:
            seen_video_only = True
            assert s["motion"] is None and s["joints"] is None
            assert not s["motion_valid"].any() and not s["chunk_valid"].any()
    assert seen_video_only and seen_motion and seen_mp4
    # the rendered frames differ between chunk boundaries (the hand moves)
    assert (ds[0]["frames"][0].int() - ds[0]["frames"][-1].int()).abs().sum() > 0


def test_window_and_split_selection(dataset_dir):
    ds = HandVideoDataset(DataConfig(root=str(dataset_dir), image_size=(16, 16), max_chunks=2, random_window=True,
                                     splits=("test",)))
    assert all(r.split == "test" for r in ds.records) and len(ds) >= 2
    starts = set()
    for epoch in range(6):
        ds.set_epoch(epoch)
        s = ds[0]
        assert s["num_chunks"] == 2 and s["frames"].shape[0] == 3
        starts.add(int(s["frame_index"][0]))
    assert starts <= {0, 15} and len(starts) == 2  # both windows occur over epochs
    wild = HandVideoDataset(DataConfig(root=str(dataset_dir), image_size=(16, 16), splits=None, domains=("wild",)))
    assert {r.domain for r in wild.records} == {"wild"}


def test_loader_mixes_motion_and_video_only_at_the_configured_ratio(dataset_dir):
    ds = HandVideoDataset(DataConfig(root=str(dataset_dir), image_size=(16, 16), splits=None))
    sampler = MixedSampler(ds, motion_fraction=0.5, num_samples=40, seed=1)
    idx = sampler.epoch_indices()
    has_motion = np.array([ds.records[i].has_motion for i in idx])
    assert len(idx) == 40 and has_motion.sum() == 20  # exactly the ratio, although the data set is 75% motion
    # every video-only sample is used about equally often (whole passes over the pool)
    counts = np.bincount(idx[~has_motion], minlength=len(ds))[ds.video_only_indices]
    assert counts.max() - counts.min() <= 1
    sampler.set_epoch(1)
    assert not np.array_equal(sampler.epoch_indices(), idx)
    # DDP: the ranks' shares are disjoint slices of the same epoch order, of equal length
    shares = [list(MixedSampler(ds, 0.5, num_samples=40, seed=1, rank=r, world_size=2)) for r in range(2)]
    assert len(shares[0]) == len(shares[1]) == 20
    assert sorted(shares[0] + shares[1]) == sorted(idx.tolist())

    loader = make_loader(ds, batch_size=5, motion_fraction=0.8, num_samples=10, seed=0)
    batches = list(loader)
    assert len(batches) == 2
    b = batches[0]
    assert b["frames"].shape == (5, 4, 16, 16, 3) and b["motion"].shape == (5, 2, 3, 15, 99)
    assert b["chunk_mask"].all() and b["has_motion"].dtype == torch.bool
    total_motion = sum(int(x["has_motion"].sum()) for x in batches)
    assert total_motion == 8
    for x in batches:  # video-only rows carry no motion
        vo = ~x["has_motion"]
        assert not x["motion_valid"][vo].any() and float(x["motion"][vo].abs().sum()) == 0.0
    with pytest.raises(ValueError, match="video-only"):
        _no_video_only_sampler(dataset_dir)


def _no_video_only_sampler(root):
    ds = HandVideoDataset(DataConfig(root=str(root), splits=None, image_size=(8, 8)))
    ds.records = [r for r in ds.records if r.has_motion]
    return MixedSampler(ds, 0.5)


def test_collate_pads_samples_of_different_lengths(dataset_dir):
    ds = HandVideoDataset(DataConfig(root=str(dataset_dir), image_size=(16, 16), splits=None))
    a = ds[ds.motion_indices[0]]
    short = ds[ds.video_only_indices[0]]
    short = {**short, "num_chunks": 1, "frames": short["frames"][:2], "frame_index": short["frame_index"][:2],
             "motion_valid": short["motion_valid"][:, :1], "chunk_valid": short["chunk_valid"][:, :1]}
    b = collate_samples([a, short])
    assert b["frames"].shape == (2, 4, 16, 16, 3)
    assert b["frame_valid"].tolist() == [[True] * 4, [True, True, False, False]]
    assert b["chunk_mask"].tolist() == [[True] * 3, [True, False, False]]
    assert b["has_motion"].tolist() == [True, False]
    assert torch.equal(b["motion"][0], a["motion"]) and b["joints"].shape == (2, 2, 3, 15, 21, 3)


def test_iter_motion_chunks_returns_fully_annotated_windows(dataset_dir):
    chunks = iter_motion_chunks(dataset_dir, stride=5)
    assert chunks.ndim == 3 and chunks.shape[1:] == (15, 99) and chunks.dtype == np.float32
    assert len(chunks) > 20
    assert rot6d_is_valid(chunks[..., :96].reshape(-1, 16, 6)).all()


def test_generator_cli(tmp_path, capsys):
    assert synthetic_main(["--out", str(tmp_path / "d"), "--num-samples", "3", "--frames", "15",
                           "--image-size", "16", "--video-only-fraction", "0.34"]) == 0
    assert "3 samples (2 with motion, 1 video-only)" in capsys.readouterr().out
    assert validate_main([str(tmp_path / "d"), "--read-frames"]) == 0


# -------------------------------------------------------------------------------------- broken data
def _motion_sample(root):
    return next(r for r in _records(root) if r["has_motion"])


def test_missing_frame_is_a_clear_error(broken_dir):
    rec = next(r for r in _records(broken_dir) if r["video"].endswith("frames"))
    frames = sorted((broken_dir / rec["video"]).iterdir())
    frames[7].unlink()
    ds = HandVideoDataset(DataConfig(root=str(broken_dir), image_size=(16, 16), splits=None))
    i = [r.id for r in ds.records].index(rec["id"])
    with pytest.raises(DataFormatError, match=f"{rec['id']}.*44 image frames but num_frames is 45"):
        ds[i]
    assert validate_main([str(broken_dir)]) == 1


def test_undecodable_frame_is_a_clear_error(broken_dir):
    rec = next(r for r in _records(broken_dir) if r["video"].endswith("frames"))
    (broken_dir / rec["video"] / "000015.jpg").write_bytes(b"not a jpeg")
    ds = HandVideoDataset(DataConfig(root=str(broken_dir), image_size=(16, 16), splits=None))
    with pytest.raises(DataFormatError, match=f"{rec['id']}.*cannot decode frame 15"):
        ds[[r.id for r in ds.records].index(rec["id"])]


def test_broken_motion_files_are_clear_errors(broken_dir):
    rec = _motion_sample(broken_dir)
    path = broken_dir / rec["motion"]
    recs = {r.id: r for r in load_index(broken_dir)}
    good = dict(np.load(path))

    np.savez(path, **{**good, "right_motion": good["right_motion"][:, :90]})
    with pytest.raises(DataFormatError, match=f"{rec['id']}.*right_motion must be \\(45, 99\\)"):
        load_motion(recs[rec["id"]])

    bad = good["left_motion"].copy()
    bad[3, 5] = np.nan
    valid = good["left_valid"].copy()
    valid[3] = True
    np.savez(path, **{**good, "left_motion": bad, "left_valid": valid})
    with pytest.raises(DataFormatError, match="NaN/inf in valid frames \\[3\\]"):
        load_motion(recs[rec["id"]])

    bad = good["left_motion"].copy()
    bad[4, 90:96] = 0.0  # degenerate wrist rotation
    np.savez(path, **{**good, "left_motion": bad, "left_valid": np.ones_like(valid)})
    with pytest.raises(DataFormatError, match="degenerate rot6d in valid frames \\[4\\]"):
        load_motion(recs[rec["id"]])

    np.savez(path, **{k: v for k, v in good.items() if k != "left_valid"})
    with pytest.raises(DataFormatError, match="missing array 'left_valid'"):
        load_motion(recs[rec["id"]])

    path.write_bytes(b"garbage")
    with pytest.raises(DataFormatError, match="cannot read the motion npz"):
        load_motion(recs[rec["id"]])
    # invalid frames may hold anything: a missing hand written as NaN is fine
    m = np.full((2, 45, 99), np.nan, dtype=np.float32)
    m[1] = identity_motion(45)
    save_motion(path, m, np.stack([np.zeros(45, bool), np.ones(45, bool)]))
    hm = load_motion(recs[rec["id"]])
    assert np.isfinite(hm.motion).all() and not hm.valid[0].any()


def test_broken_index_is_a_clear_error(broken_dir):
    lines = (broken_dir / "index.jsonl").read_text().splitlines()
    rec = _motion_sample(broken_dir)
    (broken_dir / rec["motion"]).unlink()
    with pytest.raises(DataFormatError, match=f"sample {rec['id']!r}.*motion file .* does not exist"):
        HandVideoDataset(DataConfig(root=str(broken_dir), splits=None))
    for bad_line, msg in [("{not json", "index.jsonl:2: invalid JSON"),
                          (json.dumps({**json.loads(lines[1]), "domain": "outdoor"}), "domain must be one of"),
                          (json.dumps({k: v for k, v in json.loads(lines[1]).items() if k != "fps"}),
                           "missing field\\(s\\) fps"),
                          (json.dumps({**json.loads(lines[1]), "has_motion": True, "motion": None}),
                           "has_motion is true but no motion file"),
                          (lines[0], "duplicate sample id")]:
        (broken_dir / "index.jsonl").write_text("\n".join([lines[0], bad_line] + lines[2:]) + "\n")
        with pytest.raises(DataFormatError, match=msg):
            load_index(broken_dir, check_files=False)
    with pytest.raises(DataFormatError, match="no index.jsonl"):
        load_index(broken_dir / "samples")
