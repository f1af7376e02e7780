"""Demonstration recording in LeRobot's dataset format v3.0, crash-safe, without the lerobot package.

The on-disk layout is the one ``lerobot.datasets.lerobot_dataset.LeRobotDataset(repo_id, root=...)`` loads
(facts taken from huggingface/lerobot ``src/lerobot/datasets/{utils,io_utils,feature_utils,dataset_metadata,
lerobot_dataset,compute_stats,video_utils}.py``, v0.4.x .. main)::

    meta/info.json                                   codebase_version "v3.0", totals, fps, path templates, features
    meta/stats.json                                  global stats, aggregated from the per-episode stats
    meta/tasks.parquet                               index "task" (the string), column task_index
    meta/episodes/chunk-000/file-000.parquet         one row per episode (file/offset pointers + stats/<ft>/<stat>)
    data/chunk-000/file-000.parquet                  one row per frame, several episodes per file
    videos/<video_key>/chunk-000/file-000.mp4        several episodes concatenated; per-episode from/to timestamps

Crash safety: an episode is committed with a redo log. Everything an episode changes (the grown data / video /
episodes files and the new meta files) is first written complete and fsynced under ``.staging/``; then a
manifest is written atomically; then the staged files are moved into place with ``os.replace``. ``open()`` redoes
a manifest it finds and drops staging without one, so a Ctrl-C / SIGKILL / power cut loses at most the episode in
progress and every committed episode stays readable. Video of the episode in progress is encoded on the fly
(one thread per camera) into ``.recording/``; saving remuxes its packets after the current video file's packets
(no re-encoding), starting a new file when ``video_files_size_in_mb`` would be exceeded.
"""
from __future__ import annotations

import json
import logging
import os
import queue
import shutil
import threading
from fractions import Fraction
from pathlib import Path
from typing import Any, Iterable, Mapping

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from embodiment.fr3_inspire import CHUNK_JOINT_NAMES
from training.files import fsync_dir, fsync_file, write_bytes_atomic

__all__ = [
    "CODEBASE_VERSION", "DEFAULT_FEATURES", "LeRobotV3Dataset", "LeRobotV3Writer", "aggregate_stats", "recover",
    "robot_features",
]

log = logging.getLogger(__name__)
os.environ.setdefault("SVT_LOG", "1")  # SVT-AV1 prints its banner, config and warnings to stderr: errors only

CODEBASE_VERSION = "v3.0"
DEFAULT_CHUNK_SIZE = 1000
DEFAULT_DATA_FILE_SIZE_IN_MB = 100
DEFAULT_VIDEO_FILE_SIZE_IN_MB = 200
INFO_PATH = "meta/info.json"
STATS_PATH = "meta/stats.json"
TASKS_PATH = "meta/tasks.parquet"
EPISODES_DIR = "meta/episodes"
CHUNK_FILE_PATTERN = "chunk-{chunk_index:03d}/file-{file_index:03d}"
DEFAULT_EPISODES_PATH = EPISODES_DIR + "/" + CHUNK_FILE_PATTERN + ".parquet"
DEFAULT_DATA_PATH = "data/" + CHUNK_FILE_PATTERN + ".parquet"
DEFAULT_VIDEO_PATH = "videos/{video_key}/" + CHUNK_FILE_PATTERN + ".mp4"
DEFAULT_FEATURES = {
    "timestamp": {"dtype": "float32", "shape": (1,), "names": None},
    "frame_index": {"dtype": "int64", "shape": (1,), "names": None},
    "episode_index": {"dtype": "int64", "shape": (1,), "names": None},
    "index": {"dtype": "int64", "shape": (1,), "names": None},
    "task_index": {"dtype": "int64", "shape": (1,), "names": None},
}
DEFAULT_QUANTILES = (0.01, 0.10, 0.50, 0.90, 0.99)
QUANTILE_KEYS = tuple(f"q{int(q * 100):02d}" for q in DEFAULT_QUANTILES)
STAGING_DIR = ".staging"
RECORDING_DIR = ".recording"
MANIFEST = "manifest.json"
# encoder settings as LeRobot's encode_video_frames: g=2 (a key frame every 2 frames: exact, fast seeking), crf 30,
# yuv420p, svt-av1 preset 12; B-frames are switched off for h264 so that packets can be remuxed by plain offsets
GOP = 2
CRF = 30

_ARROW_TYPES = {
    "float32": pa.float32(), "float64": pa.float64(), "float16": pa.float16(), "int64": pa.int64(),
    "int32": pa.int32(), "int16": pa.int16(), "int8": pa.int8(), "uint8": pa.uint8(), "uint16": pa.uint16(),
    "uint32": pa.uint32(), "uint64": pa.uint64(), "bool": pa.bool_(), "string": pa.string(),
}


# ------------------------------------------------------------------------------------------------ features
def robot_features(cameras: Mapping[str, tuple[int, int]], extras: Mapping[str, dict] | None = None, *,
                   joint_names: Iterable[str] = CHUNK_JOINT_NAMES) -> dict[str, dict]:
    """The features dict of a FR3 + Inspire recording (LeRobot's ``hw_to_dataset_features`` conventions).

    ``cameras``: name -> (height, width); each becomes ``observation.images.<name>`` stored as video.
    ``observation.state`` and ``action`` are float32 vectors named by ``embodiment.CHUNK_JOINT_NAMES``.
    ``extras``: further features, ``key -> {"dtype", "shape", "names"}`` (1-D shapes; dtype a numpy dtype name,
    "string" for scalar strings).
    """
    names = list(joint_names)
    features: dict[str, dict] = {}
    for cam, hw in cameras.items():
        h, w = (int(v) for v in hw[:2])
        features[f"observation.images.{cam}"] = {"dtype": "video", "shape": (h, w, 3),
                                                "names": ["height", "width", "channels"]}
    features["observation.state"] = {"dtype": "float32", "shape": (len(names),), "names": list(names)}
    features["action"] = {"dtype": "float32", "shape": (len(names),), "names": list(names)}
    for key, ft in (extras or {}).items():
        features[key] = {"dtype": ft["dtype"], "shape": tuple(ft["shape"]), "names": ft.get("names")}
    return features


def _check_features(features: Mapping[str, dict]) -> dict[str, dict]:
    out = {}
    for key, ft in features.items():
        if key in DEFAULT_FEATURES:
            continue
        if "/" in key:
            raise ValueError(f"feature names must not contain '/': {key!r}")
        dtype, shape = ft["dtype"], tuple(int(s) for s in ft["shape"])
        if dtype == "video":
            if len(shape) != 3 or shape[2] != 3 or shape[0] % 2 or shape[1] % 2:
                raise ValueError(f"{key}: video shape must be (H, W, 3) with even H, W; got {shape}")
        elif dtype == "image":
            raise NotImplementedError(f"{key}: dtype 'image' is not supported by this writer; use 'video'")
        elif dtype not in _ARROW_TYPES:
            raise ValueError(f"{key}: unsupported dtype {dtype!r}")
        elif len(shape) != 1 or (dtype == "string" and shape != (1,)):
            raise ValueError(f"{key}: only 1-D shapes are supported (strings: (1,)); got {shape}")
        out[key] = {**ft, "shape": shape}
    for key, ft in DEFAULT_FEATURES.items():
        out[key] = dict(ft)
    return out


def _json_features(features: Mapping[str, dict]) -> dict:
    return {k: {**v, "shape": list(v["shape"])} for k, v in features.items()}


def _arrow_type(ft: dict) -> pa.DataType:
    t = _ARROW_TYPES[ft["dtype"]]
    return t if tuple(ft["shape"]) == (1,) else pa.list_(t, int(ft["shape"][0]))


def _update_chunk_file(chunk: int, file: int, chunks_size: int) -> tuple[int, int]:
    return (chunk + 1, 0) if file == chunks_size - 1 else (chunk, file + 1)


# ------------------------------------------------------------------------------------------------ stats
def _vector_stats(values: np.ndarray) -> dict[str, np.ndarray]:
    """Per-episode stats as LeRobot's ``compute_episode_stats`` (axis 0, keepdims for 1-D data)."""
    arr = np.asarray(values)
    x = arr.reshape(len(arr), -1)
    xf = x.astype(np.float64)
    stats = {"min": x.min(axis=0), "max": x.max(axis=0), "mean": xf.mean(axis=0), "std": xf.std(axis=0),
             "count": np.array([len(arr)], dtype=np.int64)}
    qs = np.quantile(xf, DEFAULT_QUANTILES, axis=0) if len(x) >= 2 else np.repeat(xf.mean(0)[None], 5, 0)
    for k, q in zip(QUANTILE_KEYS, qs):
        stats[k] = q
    return stats


class _ImageStats:
    """Per-channel stats of uint8 RGB frames in [0, 1], shape (3, 1, 1), from exact 256-bin histograms."""

    def __init__(self):
        self.hist = np.zeros((3, 256), dtype=np.int64)
        self.count = 0

    def update(self, img: np.ndarray) -> None:
        h, w = img.shape[:2]
        if max(h, w) >= 300:  # LeRobot's auto_downsample_height_width: ~150 px on the long side
            step = int((w if w > h else h) / 150)
            img = img[::step, ::step]
        flat = img.reshape(-1, 3)
        for c in range(3):
            self.hist[c] += np.bincount(flat[:, c], minlength=256)
        self.count += 1

    def result(self) -> dict[str, np.ndarray]:
        v = np.arange(256, dtype=np.float64) / 255.0
        n = self.hist.sum(axis=1).astype(np.float64)
        mean = (self.hist * v).sum(1) / n
        std = np.sqrt(np.maximum((self.hist * v ** 2).sum(1) / n - mean ** 2, 0.0))
        nz = self.hist > 0
        mn = np.array([v[np.argmax(nz[c])] for c in range(3)])
        mx = np.array([v[255 - np.argmax(nz[c][::-1])] for c in range(3)])
        cdf = np.cumsum(self.hist, axis=1) / n[:, None]
        stats = {"min": mn, "max": mx, "mean": mean, "std": std}
        shape = (3, 1, 1)
        stats = {k: s.reshape(shape) for k, s in stats.items()}
        stats["count"] = np.array([self.count], dtype=np.int64)
        for k, q in zip(QUANTILE_KEYS, DEFAULT_QUANTILES):
            stats[k] = np.array([v[np.searchsorted(cdf[c], q)] for c in range(3)]).reshape(shape)
        return stats


def aggregate_stats(stats_list: list[dict[str, dict[str, np.ndarray]]]) -> dict[str, dict[str, np.ndarray]]:
    """LeRobot's ``aggregate_stats``: min/max, count-weighted mean, parallel-variance std, weighted quantiles."""
    out: dict[str, dict[str, np.ndarray]] = {}
    keys = [k for s in stats_list for k in s]
    for key in dict.fromkeys(keys):
        fts = [s[key] for s in stats_list if key in s]
        means = np.stack([np.asarray(s["mean"], dtype=np.float64) for s in fts])
        variances = np.stack([np.asarray(s["std"], dtype=np.float64) ** 2 for s in fts])
        counts = np.stack([np.asarray(s["count"]) for s in fts])
        total = counts.sum(axis=0)
        while counts.ndim < means.ndim:
            counts = np.expand_dims(counts, -1)
        mean = (means * counts).sum(0) / total
        var = ((variances + (means - mean) ** 2) * counts).sum(0) / total
        agg = {"min": np.min(np.stack([np.asarray(s["min"]) for s in fts]), axis=0),
               "max": np.max(np.stack([np.asarray(s["max"]) for s in fts]), axis=0),
               "mean": mean, "std": np.sqrt(var), "count": total}
        for q in QUANTILE_KEYS:
            if all(q in s for s in fts):
                agg[q] = (np.stack([np.asarray(s[q], dtype=np.float64) for s in fts]) * counts).sum(0) / total
        out[key] = agg
    return out


def _stats_to_json(stats: Mapping[str, Mapping[str, Any]]) -> dict:
    return {k: {s: np.asarray(v).tolist() for s, v in ft.items()} for k, ft in stats.items()}


# ------------------------------------------------------------------------------------------------ file io
def _json_bytes(data: Any) -> bytes:
    return json.dumps(data, indent=4, ensure_ascii=False).encode("utf-8")


def _tasks_table(tasks: list[str]) -> pa.Table:
    """meta/tasks.parquet as ``pandas.DataFrame({"task_index": ...}, index=pd.Index(tasks, name="task"))``
    would write it (pandas metadata included so ``pd.read_parquet`` restores the index)."""
    table = pa.table({"task_index": pa.array(range(len(tasks)), pa.int64()), "task": pa.array(tasks, pa.string())})
    pandas_meta = {
        "index_columns": ["task"],
        "column_indexes": [{"name": None, "field_name": None, "pandas_type": "unicode", "numpy_type": "object",
                            "metadata": {"encoding": "UTF-8"}}],
        "columns": [
            {"name": "task_index", "field_name": "task_index", "pandas_type": "int64", "numpy_type": "int64",
             "metadata": None},
            {"name": "task", "field_name": "task", "pandas_type": "unicode", "numpy_type": "object",
             "metadata": None},
        ],
        "creator": {"library": "pyarrow", "version": pa.__version__},
        "pandas_version": "2.2.3",
    }
    return table.replace_schema_metadata({b"pandas": json.dumps(pandas_meta).encode()})


def _read_tasks(root: Path) -> list[str]:
    path = root / TASKS_PATH
    if not path.exists():
        return []
    t = pq.read_table(path)
    names = [c for c in t.column_names if c != "task_index"]
    tasks = t.column(names[0]).to_pylist()
    order = np.argsort(t.column("task_index").to_numpy())
    return [tasks[i] for i in order]


def _read_episodes(root: Path, *, with_stats: bool = True) -> list[dict]:
    paths = sorted((root / EPISODES_DIR).glob("*/*.parquet"))
    rows: list[dict] = []
    for p in paths:
        t = pq.read_table(p)
        if not with_stats:
            t = t.select([c for c in t.column_names if not c.startswith("stats/")])
        rows.extend(t.to_pylist())
    rows.sort(key=lambda r: r["episode_index"])
    return rows


def _episode_stats_from_row(row: Mapping[str, Any]) -> dict[str, dict[str, np.ndarray]]:
    stats: dict[str, dict[str, np.ndarray]] = {}
    for col, val in row.items():
        if col.startswith("stats/") and val is not None:
            _, feat, stat = col.split("/", 2)
            stats.setdefault(feat, {})[stat] = np.asarray(val)
    return stats


# ------------------------------------------------------------------------------------------------ video
def _pick_codec(codec: str) -> str:
    import av

    for name in (codec, "h264", "libx264"):
        try:
            av.codec.Codec(name, "w")
            if name != codec:
                log.warning("video codec %s not available, falling back to %s", codec, name)
            return name
        except Exception:  # noqa: BLE001 - codec not built into this FFmpeg
            continue
    raise RuntimeError(f"no usable video encoder ({codec!r} / h264)")


def _codec_options(codec: str) -> dict[str, str]:
    opts = {"g": str(GOP), "crf": str(CRF)}
    if codec in ("libsvtav1", "av1"):
        opts["preset"] = "12"
    if codec in ("h264", "libx264", "hevc", "libx265"):
        opts["bf"] = "0"
    return opts


class _EpisodeVideoEncoder(threading.Thread):
    """Encodes one camera's frames of the episode in progress to a temporary mp4 and collects image stats."""

    def __init__(self, path: Path, *, fps: int, codec: str, height: int, width: int, maxsize: int = 120):
        super().__init__(daemon=True, name=f"encoder:{path.stem}")
        self.path, self.fps, self.codec, self.height, self.width = path, fps, codec, height, width
        self.queue: queue.Queue = queue.Queue(maxsize=maxsize)
        self.stats = _ImageStats()
        self.error: BaseException | None = None
        self.frames = 0
        self._cancel = threading.Event()
        self.start()

    def put(self, img: np.ndarray) -> None:
        if self.error is not None:
            raise RuntimeError(f"video encoder for {self.path.name} failed") from self.error
        self.queue.put(img)

    def run(self) -> None:
        import av

        container = None
        try:
            container = av.open(str(self.path), "w", format="mp4")
            stream = container.add_stream(self.codec, rate=self.fps, options=_codec_options(self.codec))
            stream.width, stream.height, stream.pix_fmt = self.width, self.height, "yuv420p"
            tb = Fraction(1, self.fps)
            while True:
                img = self.queue.get()
                if img is None or self._cancel.is_set():
                    break
                self.stats.update(img)
                frame = av.VideoFrame.from_ndarray(img, format="rgb24")
                frame.pts, frame.time_base = self.frames, tb
                self.frames += 1
                for packet in stream.encode(frame):
                    packet.duration = 1  # in the codec time base 1/fps: the mp4 gets exact durations
                    container.mux(packet)
            for packet in stream.encode(None):  # end of stream; a cancelled episode drops the packets (the
                if not self._cancel.is_set():    # encoder still gets its EOS, or SVT-AV1 complains on stderr)
                    packet.duration = 1
                    container.mux(packet)
        except BaseException as exc:  # noqa: BLE001 - reported to the recording thread
            self.error = exc
            while True:  # unblock a producer waiting on a full queue
                try:
                    self.queue.get_nowait()
                except queue.Empty:
                    break
        finally:
            if container is not None:
                try:
                    container.close()
                except Exception as exc:  # noqa: BLE001
                    self.error = self.error or exc

    def finish(self) -> None:
        if self.is_alive():
            self.queue.put(None)
            self.join()
        if self.error is not None:
            raise RuntimeError(f"video encoder for {self.path.name} failed") from self.error

    def cancel(self) -> None:
        self._cancel.set()
        if self.is_alive():
            try:
                self.queue.put_nowait(None)
            except queue.Full:
                while self.is_alive():
                    try:
                        self.queue.get_nowait()
                    except queue.Empty:
                        pass
                    try:
                        self.queue.put_nowait(None)
                        break
                    except queue.Full:
                        continue
            self.join()


def _concat_videos(inputs: list[Path], output: Path) -> list[tuple[Fraction, Fraction]]:
    """Remux the video packets of ``inputs`` (same codec/size/fps) one after the other into ``output``.

    No re-encoding: each input's packets are shifted by the summed durations of the inputs before it (the
    ffmpeg concat demuxer's behaviour, as LeRobot's ``concatenate_video_files``). Returns each input's
    (start, end) in seconds within the output.
    """
    import av

    spans: list[tuple[Fraction, Fraction]] = []
    out = av.open(str(output), "w", format="mp4", options={"movflags": "faststart"})
    try:
        out_stream = None
        offset = Fraction(0)
        for path in inputs:
            with av.open(str(path)) as src:
                in_stream = src.streams.video[0]
                tb = in_stream.time_base
                if out_stream is None:
                    out_stream = out.add_stream_from_template(in_stream, opaque=True)
                    out_stream.time_base = tb
                shift = offset / tb
                if shift.denominator != 1:
                    raise ValueError(f"{path}: time base {tb} cannot represent offset {offset}")
                shift = int(shift)
                end = 0
                for packet in src.demux(in_stream):
                    if packet.dts is None:
                        continue
                    end = max(end, packet.pts + (packet.duration or 0))
                    packet.pts += shift
                    packet.dts += shift
                    packet.stream = out_stream
                    out.mux(packet)
                if in_stream.duration:
                    end = max(end, in_stream.duration)
                spans.append((offset, offset + end * tb))
                offset = offset + end * tb
    finally:
        out.close()
    return spans


def _stream_signature(path: Path) -> tuple:
    import av

    with av.open(str(path)) as c:
        s = c.streams.video[0]
        cc = s.codec_context
        return cc.name, s.width, s.height, s.pix_fmt, s.time_base, bytes(cc.extradata or b"")


def _video_info(path: Path) -> dict:
    """The ``info`` of a video feature as LeRobot's ``get_video_info`` writes it."""
    import av

    with av.open(str(path)) as c:
        s = c.streams.video[0]
        info = {"video.height": s.height, "video.width": s.width, "video.codec": s.codec.canonical_name,
                "video.pix_fmt": s.pix_fmt, "video.is_depth_map": False, "video.fps": int(s.base_rate),
                "video.channels": 3, "has_audio": False}
    return info


# ------------------------------------------------------------------------------------------------ writer
class LeRobotV3Writer:
    """Append episodes to a LeRobot v3.0 dataset; see the module docstring for the layout and crash safety."""

    def __init__(self, root: Path, info: dict, *, video_codec: str):
        self.root = Path(root)
        self.info = info
        self.features: dict[str, dict] = {k: {**v, "shape": tuple(v["shape"])} for k, v in info["features"].items()}
        self.fps = int(info["fps"])
        self.video_keys = [k for k, v in self.features.items() if v["dtype"] == "video"]
        self.data_keys = [k for k, v in self.features.items() if v["dtype"] != "video"]
        self.video_codec = _pick_codec(video_codec) if self.video_keys else video_codec
        self.tasks: list[str] = _read_tasks(self.root)
        self.episodes: list[dict] = _read_episodes(self.root)
        self.episode_stats = [_episode_stats_from_row(r) for r in self.episodes]
        self._episode: dict | None = None
        self._closed = False
        self._video_limit_mb: float | None = None  # tests: a limit below info.json's integer MB

    # ----------------------------------------------------------------------------------- construction
    @classmethod
    def create(cls, root: str | Path, *, fps: int, features: Mapping[str, dict], robot_type: str = "fr3_inspire_rh56",
               video_codec: str = "libsvtav1", chunks_size: int = DEFAULT_CHUNK_SIZE,
               data_files_size_in_mb: int = DEFAULT_DATA_FILE_SIZE_IN_MB,
               video_files_size_in_mb: int = DEFAULT_VIDEO_FILE_SIZE_IN_MB) -> "LeRobotV3Writer":
        """Start a new dataset in ``root`` (must not exist or be empty)."""
        root = Path(root)
        if root.exists() and any(root.iterdir()):
            raise FileExistsError(f"{root} exists and is not empty; use LeRobotV3Writer.open() to append")
        if int(fps) != fps or fps <= 0:
            raise ValueError(f"fps must be a positive integer, got {fps}")
        feats = _check_features(features)
        has_video = any(f["dtype"] == "video" for f in feats.values())
        info = {
            "codebase_version": CODEBASE_VERSION, "robot_type": robot_type, "total_episodes": 0, "total_frames": 0,
            "total_tasks": 0, "chunks_size": int(chunks_size), "data_files_size_in_mb": int(data_files_size_in_mb),
            "video_files_size_in_mb": int(video_files_size_in_mb), "fps": int(fps), "splits": {},
            "data_path": DEFAULT_DATA_PATH, "video_path": DEFAULT_VIDEO_PATH if has_video else None,
            "features": _json_features(feats),
        }
        root.mkdir(parents=True, exist_ok=True)
        write_bytes_atomic(root / INFO_PATH, _json_bytes(info))
        return cls(root, info, video_codec=video_codec)

    @classmethod
    def open(cls, root: str | Path, *, video_codec: str | None = None) -> "LeRobotV3Writer":
        """Resume appending to an existing dataset; finishes or drops an interrupted commit first."""
        root = Path(root)
        recover(root)
        info = json.loads((root / INFO_PATH).read_text())
        if info.get("codebase_version") != CODEBASE_VERSION:
            raise ValueError(f"{root}: codebase_version {info.get('codebase_version')!r}, expected v3.0")
        codec = video_codec
        if codec is None:
            codec = "libsvtav1"
            for k, ft in info["features"].items():
                if ft["dtype"] == "video" and ft.get("info", {}).get("video.codec") == "h264":
                    codec = "h264"
        return cls(root, info, video_codec=codec)

    # ----------------------------------------------------------------------------------- properties
    @property
    def num_episodes(self) -> int:
        return len(self.episodes)

    @property
    def num_frames(self) -> int:
        return int(self.episodes[-1]["dataset_to_index"]) if self.episodes else 0

    @property
    def episode_frames(self) -> int:
        return 0 if self._episode is None else len(self._episode["timestamp"])

    @property
    def recording(self) -> bool:
        return self._episode is not None

    # ----------------------------------------------------------------------------------- recording
    def start_episode(self, task: str) -> None:
        if self._closed:
            raise RuntimeError("writer is closed")
        if self._episode is not None:
            raise RuntimeError("an episode is already in progress; save_episode() or discard_episode() first")
        if not isinstance(task, str) or not task:
            raise ValueError("task must be a non-empty string")
        ep_idx = self.num_episodes
        tmp = self.root / RECORDING_DIR / f"episode_{ep_idx:06d}"
        if tmp.exists():
            shutil.rmtree(tmp)
        tmp.mkdir(parents=True)
        encoders = {}
        try:
            for key in self.video_keys:
                h, w, _ = self.features[key]["shape"]
                encoders[key] = _EpisodeVideoEncoder(tmp / f"{key}.mp4", fps=self.fps, codec=self.video_codec,
                                                     height=h, width=w)
        except BaseException:
            for enc in encoders.values():
                enc.cancel()
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        self._episode = {"index": ep_idx, "task": task, "dir": tmp, "encoders": encoders, "timestamp": [],
                         "data": {k: [] for k in self.data_keys if k not in DEFAULT_FEATURES}}

    def add_frame(self, frame: Mapping[str, Any]) -> None:
        ep = self._episode
        if ep is None:
            raise RuntimeError("start_episode() first")
        expected = set(self.features) - set(DEFAULT_FEATURES)
        given = set(frame) - {"timestamp", "task"}
        if given != expected:
            raise ValueError(f"frame keys mismatch: missing {sorted(expected - given)}, "
                             f"extra {sorted(given - expected)}")
        values = {}
        for key in ep["data"]:
            ft = self.features[key]
            if ft["dtype"] == "string":
                values[key] = str(frame[key])
                continue
            arr = np.asarray(frame[key], dtype=ft["dtype"])
            if arr.shape != ft["shape"] and not (ft["shape"] == (1,) and arr.shape == ()):
                raise ValueError(f"{key}: shape {arr.shape}, expected {ft['shape']}")
            values[key] = arr.reshape(ft["shape"]).copy()
        images = {}
        for key in self.video_keys:
            img = np.asarray(frame[key])
            h, w, _ = self.features[key]["shape"]
            if img.shape == (3, h, w):
                img = img.transpose(1, 2, 0)
            if img.shape != (h, w, 3):
                raise ValueError(f"{key}: image shape {img.shape}, expected {(h, w, 3)}")
            if img.dtype != np.uint8:
                raise ValueError(f"{key}: image dtype {img.dtype}, expected uint8 RGB")
            images[key] = np.ascontiguousarray(img)
        n = len(ep["timestamp"])
        ts = float(frame["timestamp"]) if frame.get("timestamp") is not None else n / self.fps
        if self.video_keys and abs(ts - n / self.fps) >= 1e-4 and not ep.get("warned"):
            ep["warned"] = True  # LeRobot decodes video at from_timestamp + timestamp with a 1e-4 s tolerance
            log.warning("frame %d: timestamp %.6f is not frame_index / fps = %.6f; LeRobot will not find its video "
                        "frames (videos are constant-rate)", n, ts, n / self.fps)
        for key, img in images.items():
            ep["encoders"][key].put(img.copy())
        for key, v in values.items():
            ep["data"][key].append(v)
        ep["timestamp"].append(ts)

    def discard_episode(self) -> None:
        ep, self._episode = self._episode, None
        if ep is None:
            return
        for enc in ep["encoders"].values():
            enc.cancel()
        shutil.rmtree(ep["dir"], ignore_errors=True)

    def save_episode(self) -> int:
        """Commit the episode in progress; returns its episode_index."""
        ep = self._episode
        if ep is None:
            raise RuntimeError("no episode in progress")
        n = len(ep["timestamp"])
        if n == 0:
            raise ValueError("the episode has no frames; discard_episode() instead")
        try:
            for enc in ep["encoders"].values():
                enc.finish()
                if enc.frames != n:
                    raise RuntimeError(f"{enc.path.name}: {enc.frames} frames encoded, {n} expected")
        except BaseException:
            self.discard_episode()
            raise
        ep_idx = ep["index"]
        staging = self.root / STAGING_DIR / f"episode_{ep_idx:06d}"
        try:
            ep_stats, moves = self._stage_episode(ep, staging)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            self.discard_episode()
            raise
        # ---- commit: once the manifest exists the episode is in the dataset (open() redoes the moves)
        try:
            for name, _ in moves:
                fsync_file(staging / name)
            fsync_dir(staging)
            write_bytes_atomic(staging / MANIFEST, _json_bytes({"episode_index": ep_idx, "moves": moves}))
            _apply_manifest(self.root, staging)
        except BaseException:
            self._episode = None
            recover(self.root)  # finishes the commit if the manifest made it to disk, else drops it
            self._reload()
            raise
        self._episode = None
        shutil.rmtree(ep["dir"], ignore_errors=True)
        self._reload()
        return ep_idx

    def _reload(self) -> None:
        self.info = json.loads((self.root / INFO_PATH).read_text())
        for key in self.video_keys:
            if "info" in self.info["features"][key]:
                self.features[key]["info"] = self.info["features"][key]["info"]
        self.tasks = _read_tasks(self.root)
        self.episodes = _read_episodes(self.root)
        self.episode_stats = [_episode_stats_from_row(r) for r in self.episodes]

    def _stage_episode(self, ep: dict, staging: Path) -> tuple[dict, list[tuple[str, str]]]:
        ep_idx = ep["index"]
        n = len(ep["timestamp"])
        if staging.exists():
            shutil.rmtree(staging)
        staging.mkdir(parents=True)
        moves: list[tuple[str, str]] = []

        def stage(rel_final: str) -> Path:
            p = staging / f"{len(moves):03d}_{Path(rel_final).name}"
            moves.append((p.name, rel_final))
            return p

        info = json.loads(json.dumps(self.info))
        prev = self.episodes[-1] if self.episodes else None
        start = int(prev["dataset_to_index"]) if prev else 0
        tasks = list(self.tasks)
        if ep["task"] not in tasks:
            tasks.append(ep["task"])
        task_index = tasks.index(ep["task"])

        # ---- frame columns and per-episode stats
        cols: dict[str, np.ndarray] = {k: np.stack(v) if not isinstance(v[0], str) else v
                                       for k, v in ep["data"].items()}
        cols["timestamp"] = np.asarray(ep["timestamp"], dtype=np.float32)
        cols["frame_index"] = np.arange(n, dtype=np.int64)
        cols["episode_index"] = np.full(n, ep_idx, dtype=np.int64)
        cols["index"] = np.arange(start, start + n, dtype=np.int64)
        cols["task_index"] = np.full(n, task_index, dtype=np.int64)
        ep_stats: dict[str, dict[str, np.ndarray]] = {}
        for key in self.features:
            ft = self.features[key]
            if ft["dtype"] == "video":
                ep_stats[key] = ep["encoders"][key].stats.result()
            elif ft["dtype"] != "string":
                ep_stats[key] = _vector_stats(cols[key])
        arrays = []
        for key in self.data_keys:
            ft = self.features[key]
            v = cols[key]
            if ft["dtype"] == "string" or tuple(ft["shape"]) == (1,):
                arr = pa.array(np.asarray(v).reshape(-1) if ft["dtype"] != "string" else v, _arrow_type(ft))
            else:
                flat = pa.array(np.asarray(v).reshape(-1), _ARROW_TYPES[ft["dtype"]])
                arr = pa.FixedSizeListArray.from_arrays(flat, type=_arrow_type(ft))
            arrays.append(arr)
        ep_table = pa.Table.from_arrays(arrays, names=self.data_keys)

        # ---- data file: append to the latest one or start the next
        meta: dict[str, Any] = {}
        if prev is None:
            chunk, file = 0, 0
            old = None
        else:
            chunk, file = int(prev["data/chunk_index"]), int(prev["data/file_index"])
            old = self.root / self.info["data_path"].format(chunk_index=chunk, file_index=file)
            size = old.stat().st_size / 2 ** 20
            frames_in_file = start - min(int(r["dataset_from_index"]) for r in self.episodes
                                         if (r["data/chunk_index"], r["data/file_index"]) == (chunk, file))
            per_frame = size / max(frames_in_file, 1)
            if size + per_frame * n >= self.info["data_files_size_in_mb"]:
                chunk, file = _update_chunk_file(chunk, file, self.info["chunks_size"])
                old = None
        rel = self.info["data_path"].format(chunk_index=chunk, file_index=file)
        dst = stage(rel)
        _write_parquet_append(old, ep_table, dst)
        meta.update({"data/chunk_index": chunk, "data/file_index": file, "dataset_from_index": start,
                     "dataset_to_index": start + n})

        # ---- videos: remux this episode's packets after the latest file's (or into the next file)
        for key in self.video_keys:
            tmp_mp4 = ep["encoders"][key].path
            if prev is None or f"videos/{key}/chunk_index" not in prev:
                chunk, file, old, from_ts = 0, 0, None, 0.0
            else:
                chunk, file = int(prev[f"videos/{key}/chunk_index"]), int(prev[f"videos/{key}/file_index"])
                old = self.root / self.info["video_path"].format(video_key=key, chunk_index=chunk, file_index=file)
                from_ts = float(prev[f"videos/{key}/to_timestamp"])
                limit = self._video_limit_mb or self.info["video_files_size_in_mb"]
                too_big = (old.stat().st_size + tmp_mp4.stat().st_size) / 2 ** 20 >= limit
                # packets can only be appended to a file of the same encoding (else: start the next file)
                if too_big or _stream_signature(old) != _stream_signature(tmp_mp4):
                    chunk, file = _update_chunk_file(chunk, file, self.info["chunks_size"])
                    old, from_ts = None, 0.0
            rel = self.info["video_path"].format(video_key=key, chunk_index=chunk, file_index=file)
            dst = stage(rel)
            spans = _concat_videos([old, tmp_mp4] if old is not None else [tmp_mp4], dst)
            t0, t1 = spans[-1]
            if abs(float(t0) - from_ts) > 1e-6:
                raise RuntimeError(f"{key}: video offset {float(t0)} != previous to_timestamp {from_ts}")
            if abs(float(t1 - t0) - n / self.fps) > 1e-6:
                raise RuntimeError(f"{key}: episode video lasts {float(t1 - t0)} s, expected {n / self.fps} s")
            meta.update({f"videos/{key}/chunk_index": chunk, f"videos/{key}/file_index": file,
                         f"videos/{key}/from_timestamp": from_ts,
                         f"videos/{key}/to_timestamp": from_ts + float(t1 - t0)})
            if "info" not in info["features"][key]:
                info["features"][key]["info"] = _video_info(dst)

        # ---- episodes metadata row (LeRobot's column order)
        row: dict[str, Any] = {"episode_index": ep_idx, "tasks": [ep["task"]], "length": n}
        row.update(meta)
        for feat, st in ep_stats.items():
            for name, val in st.items():
                row[f"stats/{feat}/{name}"] = np.asarray(val).tolist()
        if prev is None:
            chunk, file, old = 0, 0, None
        else:
            chunk, file = int(prev["meta/episodes/chunk_index"]), int(prev["meta/episodes/file_index"])
            old = self.root / DEFAULT_EPISODES_PATH.format(chunk_index=chunk, file_index=file)
            if old.stat().st_size / 2 ** 20 * (1 + 1 / max(ep_idx, 1)) >= self.info["data_files_size_in_mb"]:
                chunk, file = _update_chunk_file(chunk, file, self.info["chunks_size"])
                old = None
        row["meta/episodes/chunk_index"] = chunk
        row["meta/episodes/file_index"] = file
        dst = stage(DEFAULT_EPISODES_PATH.format(chunk_index=chunk, file_index=file))
        _write_parquet_append(old, pa.Table.from_pylist([row]), dst)

        # ---- meta files
        info["total_episodes"] = ep_idx + 1
        info["total_frames"] = start + n
        info["total_tasks"] = len(tasks)
        info["splits"] = {"train": f"0:{ep_idx + 1}"}
        all_stats = self.episode_stats + [ep_stats]
        dst = stage(STATS_PATH)
        dst.write_bytes(_json_bytes(_stats_to_json(aggregate_stats(all_stats))))
        if len(tasks) != len(self.tasks):
            pq.write_table(_tasks_table(tasks), stage(TASKS_PATH))
        dst = stage(INFO_PATH)  # last: the dataset's totals
        dst.write_bytes(_json_bytes(info))

        return ep_stats, moves

    def close(self) -> None:
        """Discards an episode still in progress (it was never saved) and releases the writer."""
        if self._closed:
            return
        self.discard_episode()
        shutil.rmtree(self.root / RECORDING_DIR, ignore_errors=True)
        self._closed = True

    def __enter__(self) -> "LeRobotV3Writer":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _write_parquet_append(old: Path | None, new: pa.Table, dst: Path) -> None:
    """Write ``old``'s rows (kept as row groups) followed by ``new`` as one more row group."""
    if old is not None:
        old_file = pq.ParquetFile(old)
        schema = old_file.schema_arrow
        new = new.cast(schema) if new.schema != schema else new
    else:
        schema = new.schema
    with pq.ParquetWriter(dst, schema, compression="snappy", use_dictionary=True) as w:
        if old is not None:
            for i in range(old_file.num_row_groups):
                w.write_table(old_file.read_row_group(i))
        w.write_table(new, row_group_size=max(new.num_rows, 1))


def _apply_manifest(root: Path, staging: Path) -> None:
    manifest = json.loads((staging / MANIFEST).read_text())
    dirs = set()
    for name, rel in manifest["moves"]:
        src, dst = staging / name, root / rel
        if src.exists():
            dst.parent.mkdir(parents=True, exist_ok=True)
            os.replace(src, dst)
            dirs.add(dst.parent)
    for d in dirs:
        fsync_dir(d)
    shutil.rmtree(staging, ignore_errors=True)
    fsync_dir(staging.parent)


def recover(root: str | Path) -> None:
    """Finish commits whose manifest was written, drop unfinished ones and leftover episode recordings."""
    root = Path(root)
    stage_root = root / STAGING_DIR
    if stage_root.is_dir():
        for d in sorted(stage_root.iterdir()):
            if (d / MANIFEST).exists():
                log.warning("%s: completing the interrupted commit %s", root, d.name)
                _apply_manifest(root, d)
            else:
                log.warning("%s: dropping the uncommitted %s", root, d.name)
                shutil.rmtree(d, ignore_errors=True) if d.is_dir() else d.unlink()
    shutil.rmtree(root / RECORDING_DIR, ignore_errors=True)
    for tmp in (root / "meta").glob("*.tmp"):
        tmp.unlink()


# ------------------------------------------------------------------------------------------------ reader
class LeRobotV3Dataset:
    """Minimal numpy reader of a LeRobot v3.0 dataset (episodes, frames, video frames at timestamps)."""

    def __init__(self, root: str | Path, tolerance_s: float = 1e-4):
        self.root = Path(root)
        self.tolerance_s = tolerance_s
        self.info = json.loads((self.root / INFO_PATH).read_text())
        self.features = {k: {**v, "shape": tuple(v["shape"])} for k, v in self.info["features"].items()}
        self.fps = int(self.info["fps"])
        self.video_keys = [k for k, v in self.features.items() if v["dtype"] == "video"]
        self.tasks = _read_tasks(self.root)
        self.episodes = _read_episodes(self.root, with_stats=False)
        stats_path = self.root / STATS_PATH
        self.stats = None
        if stats_path.exists():
            raw = json.loads(stats_path.read_text())
            self.stats = {k: {s: np.asarray(v) for s, v in ft.items()} for k, ft in raw.items()}
        self._data: dict[str, np.ndarray] | None = None

    @property
    def num_episodes(self) -> int:
        return len(self.episodes)

    @property
    def num_frames(self) -> int:
        return int(self.info["total_frames"])

    def __len__(self) -> int:
        return self.num_frames

    def episode_stats(self) -> list[dict[str, dict[str, np.ndarray]]]:
        return [_episode_stats_from_row(r) for r in _read_episodes(self.root)]

    @property
    def data(self) -> dict[str, np.ndarray]:
        """All frames: column -> numpy array (N,) or (N, d), in dataset order."""
        if self._data is None:
            paths = sorted((self.root / "data").glob("*/*.parquet"))
            table = pa.concat_tables([pq.read_table(p) for p in paths]) if paths else None
            self._data = {}
            if table is not None:
                for name in table.column_names:
                    col = table.column(name).combine_chunks()
                    if pa.types.is_fixed_size_list(col.type):
                        self._data[name] = col.flatten().to_numpy(zero_copy_only=False).reshape(len(col), -1)
                    else:
                        self._data[name] = col.to_numpy(zero_copy_only=False)
                order = np.argsort(self._data["index"], kind="stable")
                self._data = {k: v[order] for k, v in self._data.items()}
        return self._data

    def episode_data(self, episode_index: int) -> dict[str, np.ndarray]:
        ep = self.episodes[episode_index]
        sl = slice(int(ep["dataset_from_index"]), int(ep["dataset_to_index"]))
        return {k: v[sl] for k, v in self.data.items()}

    def video_path(self, episode_index: int, key: str) -> Path:
        ep = self.episodes[episode_index]
        return self.root / self.info["video_path"].format(video_key=key, chunk_index=ep[f"videos/{key}/chunk_index"],
                                                          file_index=ep[f"videos/{key}/file_index"])

    def decode_frames(self, episode_index: int, key: str, timestamps: Iterable[float] | None = None) -> np.ndarray:
        """Decode ``key``'s frames at episode-relative ``timestamps`` (default: all the episode's frames)
        as uint8 (T, H, W, 3), like LeRobot (shift by from_timestamp, nearest frame within tolerance)."""
        import av

        ep = self.episodes[episode_index]
        if timestamps is None:
            timestamps = self.episode_data(episode_index)["timestamp"]
        query = np.asarray(list(timestamps), dtype=np.float64) + float(ep[f"videos/{key}/from_timestamp"])
        if query.size == 0:
            h, w, _ = self.features[key]["shape"]
            return np.zeros((0, h, w, 3), np.uint8)
        with av.open(str(self.video_path(episode_index, key))) as c:
            s = c.streams.video[0]
            c.seek(int(max(query.min() - 1.0 / self.fps, 0) / s.time_base), stream=s, backward=True)
            loaded_ts, loaded = [], []
            for frame in c.decode(s):
                t = float(frame.pts * s.time_base)
                if t >= query.min() - 0.5 / self.fps:
                    loaded_ts.append(t)
                    loaded.append(frame.to_ndarray(format="rgb24"))
                if t >= query.max():
                    break
        if not loaded:
            raise ValueError(f"no frames decoded for {key} episode {episode_index} at {query}")
        lt = np.asarray(loaded_ts)
        dist = np.abs(query[:, None] - lt[None, :])
        idx = dist.argmin(1)
        bad = dist[np.arange(len(query)), idx] >= self.tolerance_s
        if bad.any():
            raise ValueError(f"query timestamps {query[bad]} violate tolerance {self.tolerance_s} "
                             f"(closest loaded {lt[idx[bad]]}) in {key} episode {episode_index}")
        return np.stack([loaded[i] for i in idx])

    def __getitem__(self, idx: int) -> dict[str, Any]:
        item = {k: v[idx] for k, v in self.data.items()}
        ep = int(item["episode_index"])
        for key in self.video_keys:
            item[key] = self.decode_frames(ep, key, [float(item["timestamp"])])[0]
        item["task"] = self.tasks[int(item["task_index"])]
        return item
