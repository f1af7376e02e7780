"""Raw rosbag2 (MCAP) episode logs (training/recording/rosbag.py): CDR bytes in, the same messages out."""
import numpy as np
import pytest
from rosbags.rosbag2 import Reader
from rosbags.typesys import Stores, get_typestore

from embodiment.fr3_inspire import CHUNK_JOINT_NAMES
from training.recording import RawBagWriter, episode_bag_path

TS = get_typestore(Stores.ROS2_JAZZY)
JointState = TS.types["sensor_msgs/msg/JointState"]
Header = TS.types["std_msgs/msg/Header"]
Time = TS.types["builtin_interfaces/msg/Time"]


def joint_state(t_ns: int, q: np.ndarray):
    return JointState(header=Header(stamp=Time(sec=t_ns // 10**9, nanosec=t_ns % 10**9), frame_id="fr3_link0"),
                      name=list(CHUNK_JOINT_NAMES), position=q.astype(np.float64),
                      velocity=np.zeros(len(q)), effort=np.zeros(0))


def test_episode_bag_path(tmp_path):
    assert episode_bag_path(tmp_path, 3) == tmp_path / "raw" / "episode_000003"


def test_write_raw_cdr_and_read_back(tmp_path):
    path = episode_bag_path(tmp_path / "ds", 0)
    path.parent.mkdir(parents=True)
    t0 = 1_700_000_000_000_000_000
    sent = []
    with RawBagWriter(path) as bag:
        bag.add_topic("/joint_states", "sensor_msgs/msg/JointState")
        bag.add_topic("/inspire/state", "sensor_msgs/msg/JointState", serialization_format="cdr")
        for i in range(20):
            q = np.arange(13, dtype=np.float64) * 0.01 + i
            raw = TS.serialize_cdr(joint_state(t0 + i * 10**7, q), "sensor_msgs/msg/JointState")
            topic = "/joint_states" if i % 2 == 0 else "/inspire/state"
            bag.write(topic, t0 + i * 10**7, raw)
            sent.append((topic, t0 + i * 10**7, bytes(raw), q))
        assert bag.message_count == 20
        with pytest.raises(KeyError):
            bag.write("/unknown", t0, raw)
    assert (path / "metadata.yaml").is_file() and list(path.glob("*.mcap"))

    with Reader(path) as reader:
        assert {c.topic: c.msgtype for c in reader.connections} == {
            "/joint_states": "sensor_msgs/msg/JointState", "/inspire/state": "sensor_msgs/msg/JointState"}
        assert reader.message_count == 20
        got = [(conn.topic, t, bytes(raw)) for conn, t, raw in reader.messages()]
    assert sorted(got, key=lambda m: m[1]) == [(tp, t, raw) for tp, t, raw, _ in sent]
    for (_, t, raw), (_, _, _, q) in zip(sorted(got, key=lambda m: m[1]), sent):
        msg = TS.deserialize_cdr(raw, "sensor_msgs/msg/JointState")
        assert list(msg.name) == list(CHUNK_JOINT_NAMES)
        np.testing.assert_array_equal(msg.position, q)
        assert msg.header.stamp.sec * 10**9 + msg.header.stamp.nanosec == t
