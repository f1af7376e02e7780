"""LeRobot v3.0 recording (training/recording/lerobot_v3.py): layout, boundaries, video content, stats, crash safety."""
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from embodiment.fr3_inspire import CHUNK_JOINT_NAMES
from training.recording import LeRobotV3Dataset, LeRobotV3Writer, aggregate_stats, robot_features

FPS = 30
H, W = 48, 64
CAMS = {"front": (H, W), "wrist": (H, W)}
LENGTHS = [10, 15, 12]
TASKS = ["pick the cube", "open the drawer", "pick the cube"]
REPO = Path(__file__).resolve().parents[2]


def colour(ep: int, i: int, cam: int) -> int:
    return (40 + ep * 60 + i * 11 + cam * 97) % 200 + 20  # distinct per frame, away from clipping


def make_frame(ep: int, i: int) -> dict:
    return {
        "observation.images.front": np.full((H, W, 3), colour(ep, i, 0), np.uint8),
        "observation.images.wrist": np.full((H, W, 3), colour(ep, i, 1), np.uint8),
        "observation.state": (np.arange(13, dtype=np.float32) + 100 * ep + i),
        "action": -(np.arange(13, dtype=np.float32) + 100 * ep + i),
    }


def record(writer: LeRobotV3Writer, ep: int, n: int, task: str) -> int:
    writer.start_episode(task)
    for i in range(n):
        writer.add_frame(make_frame(ep, i))
    assert writer.episode_frames == n
    return writer.save_episode()


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("lerobot") / "ds"
    w = LeRobotV3Writer.create(root, fps=FPS, features=robot_features(CAMS))
    for ep, (n, task) in enumerate(zip(LENGTHS, TASKS)):
        assert record(w, ep, n, task) == ep
    assert (w.num_episodes, w.num_frames) == (3, sum(LENGTHS))
    w.close()
    return root


def test_info_json(dataset):
    info = json.loads((dataset / "meta/info.json").read_text())
    assert info["codebase_version"] == "v3.0"
    assert info["robot_type"] == "fr3_inspire_rh56"
    assert (info["total_episodes"], info["total_frames"], info["total_tasks"]) == (3, sum(LENGTHS), 2)
    assert (info["chunks_size"], info["data_files_size_in_mb"], info["video_files_size_in_mb"]) == (1000, 100, 200)
    assert info["fps"] == FPS and info["splits"] == {"train": "0:3"}
    assert info["data_path"] == "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
    assert info["video_path"] == "videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4"
    f = info["features"]
    for key in ("timestamp",):
        assert f[key] == {"dtype": "float32", "shape": [1], "names": None}
    for key in ("frame_index", "episode_index", "index", "task_index"):
        assert f[key] == {"dtype": "int64", "shape": [1], "names": None}
    for key in ("observation.state", "action"):
        assert f[key] == {"dtype": "float32", "shape": [13], "names": list(CHUNK_JOINT_NAMES)}
    for cam in CAMS:
        ft = f[f"observation.images.{cam}"]
        assert ft["dtype"] == "video" and ft["shape"] == [H, W, 3]
        assert ft["names"] == ["height", "width", "channels"]
        vi = ft["info"]
        assert (vi["video.height"], vi["video.width"], vi["video.fps"], vi["video.pix_fmt"]) == (H, W, FPS, "yuv420p")
        assert vi["video.codec"] in ("av1", "h264") and vi["has_audio"] is False


def test_files_and_tasks(dataset):
    assert (dataset / "meta/stats.json").is_file()
    assert (dataset / "meta/episodes/chunk-000/file-000.parquet").is_file()
    assert (dataset / "data/chunk-000/file-000.parquet").is_file()
    for cam in CAMS:  # all three episodes concatenated in one file per camera
        assert sorted(p.relative_to(dataset).as_posix() for p in (dataset / "videos").glob(f"*{cam}/*/*")) == [
            f"videos/observation.images.{cam}/chunk-000/file-000.mp4"]
    assert not (dataset / ".staging").exists() or not any((dataset / ".staging").iterdir())
    tasks = pq.read_table(dataset / "meta/tasks.parquet")
    assert tasks.column("task").to_pylist() == ["pick the cube", "open the drawer"]
    assert tasks.column("task_index").to_pylist() == [0, 1]
    assert json.loads(tasks.schema.metadata[b"pandas"])["index_columns"] == ["task"]


def test_data_schema_and_indices(dataset):
    t = pq.read_table(dataset / "data/chunk-000/file-000.parquet")
    assert t.column_names == ["observation.state", "action", "timestamp", "frame_index", "episode_index", "index",
                              "task_index"]
    st = t.schema.field("observation.state").type  # datasets.Sequence(length=13, feature=Value("float32"))
    assert pa.types.is_fixed_size_list(st) and st.list_size == 13 and st.value_type == pa.float32()
    assert str(t.schema.field("timestamp").type) == "float"
    ds = LeRobotV3Dataset(dataset)
    d = ds.data
    assert np.array_equal(d["index"], np.arange(sum(LENGTHS)))
    start = 0
    for ep, n in enumerate(LENGTHS):
        e = ds.episodes[ep]
        assert (e["episode_index"], e["length"], e["dataset_from_index"], e["dataset_to_index"]) == (ep, n, start,
                                                                                                     start + n)
        assert e["tasks"] == [TASKS[ep]] and (e["data/chunk_index"], e["data/file_index"]) == (0, 0)
        ed = ds.episode_data(ep)
        assert np.array_equal(ed["frame_index"], np.arange(n))
        assert np.all(ed["episode_index"] == ep)
        assert np.all(ed["task_index"] == ds.tasks.index(TASKS[ep]))
        np.testing.assert_allclose(ed["timestamp"], np.arange(n, dtype=np.float32) / FPS, rtol=0, atol=1e-7)
        np.testing.assert_array_equal(ed["observation.state"][:, 0], 100 * ep + np.arange(n))
        np.testing.assert_array_equal(ed["action"][3], make_frame(ep, 3)["action"])
        start += n


def test_video_timestamps_and_content(dataset):
    ds = LeRobotV3Dataset(dataset)
    for cam_i, cam in enumerate(CAMS):
        key = f"observation.images.{cam}"
        t = 0.0
        for ep, n in enumerate(LENGTHS):
            e = ds.episodes[ep]
            assert (e[f"videos/{key}/chunk_index"], e[f"videos/{key}/file_index"]) == (0, 0)
            assert e[f"videos/{key}/from_timestamp"] == pytest.approx(t, abs=1e-9)
            assert e[f"videos/{key}/to_timestamp"] == pytest.approx(t + n / FPS, abs=1e-9)
            t = e[f"videos/{key}/to_timestamp"]
            frames = ds.decode_frames(ep, key)  # at the stored float32 timestamps, tolerance 1e-4 s as LeRobot
            assert frames.shape == (n, H, W, 3) and frames.dtype == np.uint8
            got = frames.reshape(n, -1).mean(1)
            want = np.array([colour(ep, i, cam_i) for i in range(n)])
            assert np.abs(got - want).max() < 4, (cam, ep, got, want)
        # an arbitrary subset, out of order
        sub = ds.decode_frames(1, key, [5 / FPS, 0.0, 14 / FPS])
        assert np.abs(sub.reshape(3, -1).mean(1) - [colour(1, i, cam_i) for i in (5, 0, 14)]).max() < 4
        with pytest.raises(ValueError):
            ds.decode_frames(1, key, [0.5 / FPS])  # between two frames: outside tolerance
    item = ds[LENGTHS[0] + 3]
    assert item["episode_index"] == 1 and item["frame_index"] == 3 and item["task"] == TASKS[1]
    assert abs(int(item["observation.images.wrist"].mean()) - colour(1, 3, 1)) < 4


def test_stats(dataset):
    ds = LeRobotV3Dataset(dataset)
    per_ep = ds.episode_stats()
    assert len(per_ep) == 3
    cols = pq.read_table(dataset / "meta/episodes/chunk-000/file-000.parquet").column_names
    for stat in ("min", "max", "mean", "std", "count", "q01", "q10", "q50", "q90", "q99"):
        for feat in ("observation.state", "action", "observation.images.front", "timestamp", "index"):
            assert f"stats/{feat}/{stat}" in cols
    s0 = per_ep[1]["observation.state"]
    x = ds.episode_data(1)["observation.state"]
    np.testing.assert_allclose(s0["mean"], x.mean(0), rtol=1e-6)
    np.testing.assert_allclose(s0["std"], x.std(0), rtol=1e-6)
    np.testing.assert_array_equal(s0["min"], x.min(0))
    assert s0["count"].tolist() == [LENGTHS[1]]
    img = per_ep[0]["observation.images.front"]
    assert img["mean"].shape == (3, 1, 1) and img["count"].tolist() == [LENGTHS[0]]
    vals = np.array([colour(0, i, 0) for i in range(LENGTHS[0])]) / 255
    np.testing.assert_allclose(img["mean"].ravel(), vals.mean(), atol=1e-9)
    np.testing.assert_allclose(img["max"].ravel(), vals.max(), atol=1e-9)
    # global stats: exact over all frames for mean/std/min/max, and equal to the aggregate of the episodes
    g = ds.stats
    allx = ds.data["observation.state"]
    np.testing.assert_allclose(g["observation.state"]["mean"], allx.mean(0), rtol=1e-6)
    np.testing.assert_allclose(g["observation.state"]["std"], allx.std(0), rtol=1e-6)
    np.testing.assert_array_equal(g["observation.state"]["max"], allx.max(0))
    assert g["observation.state"]["count"].tolist() == [sum(LENGTHS)]
    agg = aggregate_stats(per_ep)
    for feat in g:
        for k in g[feat]:
            np.testing.assert_allclose(g[feat][k], agg[feat][k], rtol=1e-9)
    assert np.asarray(g["observation.images.wrist"]["mean"]).shape == (3, 1, 1)


def test_discard_and_resume_after_close(tmp_path):
    root = tmp_path / "ds"
    w = LeRobotV3Writer.create(root, fps=FPS, features=robot_features({"front": (H, W)}), video_codec="h264")
    record_cam = lambda ep, n: [w.add_frame({k: v for k, v in make_frame(ep, i).items() if "wrist" not in k})
                                for i in range(n)]
    w.start_episode("a")
    record_cam(0, 6)
    w.discard_episode()
    assert w.num_episodes == 0 and not any((root / ".recording").glob("*"))
    w.start_episode("a")
    record_cam(0, 6)
    assert w.save_episode() == 0
    w.start_episode("b")
    record_cam(1, 4)
    w.close()  # the episode in progress is dropped
    w = LeRobotV3Writer.open(root)
    assert (w.num_episodes, w.num_frames) == (1, 6)
    w.start_episode("b")
    record_cam(1, 8)
    assert w.save_episode() == 1
    w.close()
    ds = LeRobotV3Dataset(root)
    assert ds.info["total_episodes"] == 2 and ds.info["total_frames"] == 14 and ds.tasks == ["a", "b"]
    assert ds.info["features"]["observation.images.front"]["info"]["video.codec"] == "h264"
    assert np.array_equal(ds.data["index"], np.arange(14))
    fr = ds.decode_frames(1, "observation.images.front")
    assert np.abs(fr.reshape(8, -1).mean(1) - [colour(1, i, 0) for i in range(8)]).max() < 4
    with pytest.raises(FileExistsError):
        LeRobotV3Writer.create(root, fps=FPS, features=robot_features({"front": (H, W)}))


def test_discarding_an_av1_episode_closes_the_encoder_quietly(tmp_path, capfd):
    """A discarded episode's encoder still gets its end of stream: SVT-AV1 prints nothing on the operator's
    terminal (it complains "deinit called without sending EOS" otherwise), and a following episode saves."""
    rng = np.random.default_rng(0)
    w = LeRobotV3Writer.create(tmp_path / "ds", fps=15, features=robot_features({"front": (240, 320)}))

    def frames(n):
        for _ in range(n):  # noise keeps frames inside the encoder's look-ahead when the episode is dropped
            w.add_frame({"observation.images.front": rng.integers(0, 255, (240, 320, 3), dtype=np.uint8),
                         "observation.state": np.zeros(13, np.float32), "action": np.zeros(13, np.float32)})

    w.start_episode("a")
    frames(150)
    w.discard_episode()
    w.start_episode("a")
    frames(5)
    assert w.save_episode() == 0
    w.close()
    assert "EOS" not in capfd.readouterr().err
    ds = LeRobotV3Dataset(tmp_path / "ds")
    assert ds.info["features"]["observation.images.front"]["info"]["video.codec"] == "av1"
    assert ds.info["total_frames"] == 5 and ds.decode_frames(0, "observation.images.front").shape[0] == 5


def test_file_rotation(tmp_path):
    root = tmp_path / "ds"
    w = LeRobotV3Writer.create(root, fps=FPS, features=robot_features({"front": (H, W)}), video_codec="h264",
                               video_files_size_in_mb=1, chunks_size=2)
    w._video_limit_mb = 1e-4  # below info.json's integer MB: every episode starts a new video file
    for ep in range(3):
        w.start_episode("a")
        for i in range(5):
            w.add_frame({k: v for k, v in make_frame(ep, i).items() if "wrist" not in k})
        w.save_episode()
    w.close()
    ds = LeRobotV3Dataset(root)
    key = "observation.images.front"
    locs = [(e[f"videos/{key}/chunk_index"], e[f"videos/{key}/file_index"], e[f"videos/{key}/from_timestamp"])
            for e in ds.episodes]
    assert locs == [(0, 0, 0.0), (0, 1, 0.0), (1, 0, 0.0)]  # chunks_size=2 files per chunk
    assert ds.info["video_files_size_in_mb"] == 1 and ds.info["chunks_size"] == 2
    for ep in range(3):
        fr = ds.decode_frames(ep, key)
        assert np.abs(fr.reshape(5, -1).mean(1) - [colour(ep, i, 0) for i in range(5)]).max() < 4


def test_frame_validation(tmp_path):
    w = LeRobotV3Writer.create(tmp_path / "ds", fps=FPS, features=robot_features({"front": (H, W)}))
    w.start_episode("a")
    frame = {k: v for k, v in make_frame(0, 0).items() if "wrist" not in k}
    with pytest.raises(ValueError):
        w.add_frame({k: v for k, v in frame.items() if k != "action"})
    with pytest.raises(ValueError):
        w.add_frame({**frame, "observation.state": np.zeros(12, np.float32)})
    with pytest.raises(ValueError):
        w.add_frame({**frame, "observation.images.front": np.zeros((H, W, 3), np.float32)})
    w.close()


CRASH_SCRIPT = textwrap.dedent("""
    import sys, time
    sys.path.insert(0, {repo!r})
    sys.path.insert(0, {tests!r})
    from test_lerobot_v3 import CAMS, make_frame, record
    from training.recording import LeRobotV3Writer, robot_features
    w = LeRobotV3Writer.create({root!r}, fps=30, features=robot_features(CAMS))
    record(w, 0, 10, "pick the cube")
    record(w, 1, 15, "open the drawer")
    w.start_episode("pick the cube")
    for i in range(7):
        w.add_frame(make_frame(2, i))
    print("RECORDING", flush=True)
    time.sleep(60)
""")


def test_sigkill_during_episode_3_then_resume(tmp_path):
    root = tmp_path / "ds"
    script = CRASH_SCRIPT.format(repo=str(REPO), tests=str(Path(__file__).parent), root=str(root))
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                            text=True)
    try:
        assert proc.stdout.readline().strip() == "RECORDING"
        time.sleep(0.2)  # let the encoder threads write part of episode 3's temporary mp4s
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    assert (root / ".recording" / "episode_000002").is_dir()  # leftovers of the unfinished episode
    ds = LeRobotV3Dataset(root)  # episodes 1-2 are readable as they are
    assert ds.num_episodes == 2 and ds.info["total_frames"] == 25
    assert ds.decode_frames(1, "observation.images.front").shape[0] == 15
    w = LeRobotV3Writer.open(root)
    assert not (root / ".recording").exists() or not any((root / ".recording").iterdir())
    assert (w.num_episodes, w.num_frames) == (2, 25)
    assert record(w, 2, 12, "pick the cube") == 2
    w.close()
    ds = LeRobotV3Dataset(root)
    assert ds.info["total_episodes"] == 3 and ds.info["total_frames"] == 37 and ds.info["splits"] == {"train": "0:3"}
    assert np.array_equal(ds.data["index"], np.arange(37))
    assert ds.episodes[2]["videos/observation.images.wrist/from_timestamp"] == pytest.approx(25 / FPS)
    fr = ds.decode_frames(2, "observation.images.wrist")
    assert np.abs(fr.reshape(12, -1).mean(1) - [colour(2, i, 1) for i in range(12)]).max() < 4
    assert ds.stats["observation.state"]["count"].tolist() == [37]


def test_interrupted_commit_is_completed_or_dropped(tmp_path, monkeypatch):
    """A crash between staging and moving files: with the manifest the commit is redone, without it dropped."""
    import training.recording.lerobot_v3 as lv3

    root = tmp_path / "ds"
    w = LeRobotV3Writer.create(root, fps=FPS, features=robot_features({"front": (H, W)}), video_codec="h264")
    frame = lambda ep, i: {k: v for k, v in make_frame(ep, i).items() if "wrist" not in k}
    w.start_episode("a")
    for i in range(5):
        w.add_frame(frame(0, i))
    w.save_episode()

    def crash(root_, staging):  # the process dies right after the manifest is on disk
        raise KeyboardInterrupt

    monkeypatch.setattr(lv3, "_apply_manifest", crash)
    monkeypatch.setattr(lv3, "recover", lambda root_: None)
    w.start_episode("b")
    for i in range(6):
        w.add_frame(frame(1, i))
    with pytest.raises(KeyboardInterrupt):
        w.save_episode()
    monkeypatch.undo()
    assert json.loads((root / "meta/info.json").read_text())["total_episodes"] == 1  # nothing moved yet
    w = LeRobotV3Writer.open(root)  # redoes the commit
    assert (w.num_episodes, w.num_frames) == (2, 11)
    w.close()
    ds = LeRobotV3Dataset(root)
    assert ds.tasks == ["a", "b"] and ds.decode_frames(1, "observation.images.front").shape[0] == 6

    # staging without a manifest (crash while staging): dropped, dataset unchanged
    junk = root / ".staging" / "episode_000002"
    junk.mkdir(parents=True)
    (junk / "000_file-000.parquet").write_bytes(b"partial")
    w = LeRobotV3Writer.open(root)
    assert (w.num_episodes, w.num_frames) == (2, 11) and not junk.exists()
    w.close()
