"""Recording demonstrations through the ROS graph on the simulated world, as the runner starts it with
``--record N --dataset DIR``: the scripted expert is the operator (inside sim_devices, through the teleop session
and the same chunk topic as the policy), the recorder node writes a LeRobot v3.0 dataset. The recorder is
SIGKILLed during episode 3: episodes 1-2 stay intact and loadable, and a restarted recorder appends episode 3."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

pytest.importorskip("rclpy")
pytest.importorskip("hardware.sim.world")

from tests.helpers import ROOT, use_ros_packages  # noqa: E402

use_ros_packages()

from embodiment import ACTION_DIM, CHUNK_JOINT_NAMES  # noqa: E402
from jala_bringup.graph import GraphArgs, build_graph  # noqa: E402
from jala_bringup.ros_env import apply_loopback_env, loopback_env  # noqa: E402
from jala_bringup.run import GraphProcesses, Monitor  # noqa: E402

DOMAIN = 61
W, H, FPS = 96, 72, 15


def _episodes(root) -> list[dict]:
    import pyarrow.parquet as pq

    files = sorted((root / "meta" / "episodes").rglob("*.parquet"))
    rows = [r for f in files for r in pq.read_table(f).to_pylist()]
    return sorted(rows, key=lambda r: r["episode_index"])


def _frames(root) -> dict[str, np.ndarray]:
    """Every frame row of the dataset's data files: column -> array (in file order)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.concat_tables([pq.read_table(f) for f in sorted((root / "data").rglob("*.parquet"))])
    return {name: np.asarray(table.column(name).to_pylist()) for name in table.column_names}


def _check_dataset(root, n_episodes: int) -> None:
    info = json.loads((root / "meta" / "info.json").read_text())
    assert info["codebase_version"] == "v3.0" and info["fps"] == FPS
    assert info["total_episodes"] == n_episodes
    feats = info["features"]
    assert feats["observation.state"]["shape"] == [ACTION_DIM] and feats["action"]["shape"] == [ACTION_DIM]
    assert feats["observation.state"]["names"] == list(CHUNK_JOINT_NAMES)
    assert feats["observation.images.camera"]["dtype"] == "video"
    assert feats["observation.images.camera"]["shape"][:2] == [H, W]
    eps = _episodes(root)
    assert [e["episode_index"] for e in eps] == list(range(n_episodes))
    frames = _frames(root)
    n = len(frames["index"])
    assert info["total_frames"] == n == sum(e["length"] for e in eps)
    assert list(frames["index"]) == list(range(n))  # global index continuous over the episodes
    for e in eps:
        sel = frames["episode_index"] == e["episode_index"]
        length = int(sel.sum())
        assert length == e["length"] > FPS  # more than a second of demonstration
        assert list(frames["frame_index"][sel]) == list(range(length))
        np.testing.assert_allclose(frames["timestamp"][sel], np.arange(length) / FPS, atol=1e-4)
        idx = frames["index"][sel]
        assert e["dataset_from_index"] == idx[0] and e["dataset_to_index"] == idx[-1] + 1
        actions = np.stack(frames["action"][sel]).astype(float)
        assert actions.shape == (length, ACTION_DIM) and np.all(np.isfinite(actions))
        # a smooth operator command, not noise: the expert moves a joint at most 0.075 rad per frame. The recorder
        # samples the newest command on the wall clock, so when a loaded machine stalls the graph the command
        # repeats for some frames and then jumps (0.27 rad in one frame on 2 busy cores). Stalls move the motion
        # between frames but do not add to it: the mean step stays within the expert's speed, where noise would not.
        steps = np.abs(np.diff(actions[:, :7], axis=0)).max(axis=1)
        assert steps.mean() <= 0.075 and steps.max() < 1.0, (steps.mean(), steps.max())


def _video_frames(root) -> int:
    import av

    n = 0
    for f in sorted((root / "videos" / "observation.images.camera").rglob("*.mp4")):
        with av.open(str(f)) as c:
            n += sum(1 for _ in c.decode(video=0))
    return n


def test_three_expert_episodes_through_the_ros_graph_survive_a_killed_recorder(tmp_path):
    import rclpy
    from std_msgs.msg import String

    from jala_ros.conversions import LATCHED_QOS

    root = tmp_path / "water_plant"
    env = loopback_env(DOMAIN)
    args = GraphArgs(task="water_plant", record=3, dataset=str(root),
                     overrides={"sim_devices": {"render_width": W, "render_height": H, "camera_fps": 15.0}})
    specs = build_graph(args)
    assert [s.role for s in specs] == ["sim_devices", "supervisor", "recorder"]  # the operator drives, no policy
    procs = GraphProcesses(specs, env, tmp_path)
    procs.start()
    apply_loopback_env(DOMAIN)
    rclpy.init(domain_id=DOMAIN)
    mon = Monitor(["/camera/camera/color/camera_info"], name="test_recording_monitor")
    status: dict = {}
    mon.node.create_subscription(String, "/jala/recorder/status", lambda m: status.update(json.loads(m.data)),
                                 LATCHED_QOS)

    def wait(cond, timeout, what):
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            dead = procs.dead()
            assert not dead, f"{dead[0].spec.role} died:\n{procs.tail(dead[0])}"
            if cond():
                return
            time.sleep(0.1)
        raise AssertionError(f"timed out waiting for {what}; recorder status {status}\n"
                             f"recorder log:\n{procs.tail(procs.process('recorder'))}\n"
                             f"sim log:\n{procs.tail(procs.process('sim_devices'))}")

    try:
        # two episodes saved, then the third one recording for a while: SIGKILL the recorder mid-episode
        wait(lambda: status.get("saved_this_run", 0) >= 2 and status.get("recording") and
             status.get("frames", 0) > FPS, 240.0, "episode 3 to be recording")
        rec = procs.process("recorder")
        os.kill(rec.popen.pid, signal.SIGKILL)
        rec.popen.wait(timeout=10)
        _check_dataset(root, 2)  # the finished episodes are intact and readable
        assert _video_frames(root) >= sum(e["length"] for e in _episodes(root))
        status.clear()
        procs.restart("recorder")  # appends to the same dataset; the expert starts the next episode over
        wait(lambda: status.get("saved_this_run", 0) >= 1, 240.0, "the restarted recorder to save episode 3")
    finally:
        mon.close()
        stuck = procs.stop()
        rclpy.try_shutdown()
    _check_dataset(root, 3)
    # SIGINT while episode 4 was requested, recording or being saved: it is saved whole or leaves no raw bag
    assert not (root / "raw" / "episode_000003").exists() or len(_episodes(root)) == 4, stuck
    assert sorted(p.name for p in (root / "raw").iterdir())[:3] == [f"episode_{i:06d}" for i in range(3)]


def test_shutdown_while_an_episode_waits_for_fresh_inputs_leaves_no_raw_bag(tmp_path):
    """An episode requested (its raw bag open) but not yet begun when the recorder shuts down is dropped whole."""
    import rclpy

    from jala_ros.recorder_node import RecorderNode

    root = tmp_path / "ds"
    apply_loopback_env(DOMAIN + 1)
    rclpy.init(domain_id=DOMAIN + 1)
    try:
        node = RecorderNode(overrides={"dataset": str(root), "image_width": W, "image_height": H,
                                       "fps": float(FPS)})
        ok, _ = node.start_episode()  # no camera or joint state is published: the episode stays pending
        assert ok and node.recorder.starting and not node.recorder.recording
        assert (root / "raw" / "episode_000000").is_dir()
        node.destroy_node()
    finally:
        rclpy.try_shutdown()
    assert not (root / "raw" / "episode_000000").exists()
    info = json.loads((root / "meta" / "info.json").read_text())
    assert info["total_episodes"] == 0


def test_ctrl_c_while_an_episode_starts_lets_the_start_finish_then_shuts_down_without_its_raw_bag(tmp_path,
                                                                                                   monkeypatch):
    """Ctrl-C (SIGINT raising KeyboardInterrupt in the main thread, as ``init_ros`` sets it up) that arrives while
    the start service is opening the raw bag: the start completes first, so the node knows its bag and the
    shutdown that follows deletes it (an interrupt raised half-way left an untracked raw bag behind)."""
    import rclpy

    from jala_ros.recorder_node import RecorderNode
    from training.recording import rosbag

    root = tmp_path / "ds"
    real_add_topic = rosbag.RawBagWriter.add_topic
    sent = []

    def add_topic_then_ctrl_c(self, *args, **kwargs):
        if not sent:
            sent.append(True)
            os.kill(os.getpid(), signal.SIGINT)
        return real_add_topic(self, *args, **kwargs)

    def interrupt(*_):
        raise KeyboardInterrupt

    monkeypatch.setattr(rosbag.RawBagWriter, "add_topic", add_topic_then_ctrl_c)
    previous = signal.signal(signal.SIGINT, interrupt)
    apply_loopback_env(DOMAIN + 2)
    rclpy.init(domain_id=DOMAIN + 2)
    try:
        node = RecorderNode(overrides={"dataset": str(root), "image_width": W, "image_height": H,
                                       "fps": float(FPS)})
        with pytest.raises(KeyboardInterrupt):
            node.start_episode()
        assert sent and node.recorder.starting
        assert node._bag is not None and (root / "raw" / "episode_000000").is_dir()
        assert sorted(node._bag.topics) == sorted(node._topics)  # the bag was opened whole before the interrupt
        node.destroy_node()
    finally:
        signal.signal(signal.SIGINT, previous)
        rclpy.try_shutdown()
    assert not (root / "raw" / "episode_000000").exists()
    assert json.loads((root / "meta" / "info.json").read_text())["total_episodes"] == 0


def test_sigterm_with_its_default_action_inside_a_deferred_block_still_terminates_after_the_block():
    """``interrupts_deferred`` delays a signal, it never swallows one: SIGTERM with no handler (its default action
    is to terminate) ends the process once the block is done."""
    code = textwrap.dedent('''
        import os, signal
        from tests.helpers import use_ros_packages
        use_ros_packages()
        from jala_ros.node_utils import interrupts_deferred
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        with interrupts_deferred():
            os.kill(os.getpid(), signal.SIGTERM)
            print("block finished", flush=True)
        print("after the block", flush=True)
    ''')
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == -signal.SIGTERM, (out.returncode, out.stderr[-1000:])
    assert out.stdout.split("\n")[0] == "block finished" and "after the block" not in out.stdout
