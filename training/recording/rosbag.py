"""Raw rosbag2 (MCAP) logs of an episode, written from already-serialized CDR message bytes.

One bag directory per episode next to the LeRobot dataset: ``<root>/raw/episode_000000/`` (``episode_bag_path``).
"""
from __future__ import annotations

from pathlib import Path

from rosbags.rosbag2 import StoragePlugin, Writer
from rosbags.typesys import Stores, get_typestore

__all__ = ["RawBagWriter", "episode_bag_path"]

RAW_DIR = "raw"


def episode_bag_path(root: str | Path, episode_index: int) -> Path:
    """``<root>/raw/episode_<index:06d>``: where an episode's bag directory goes (it must not exist yet)."""
    return Path(root) / RAW_DIR / f"episode_{int(episode_index):06d}"


class RawBagWriter:
    """rosbag2 writer (storage MCAP, bag version 9) taking raw serialized messages.

    ``add_topic(name, msgtype)`` registers a topic; the message definition comes from ``typestore`` (default:
    ROS 2 Jazzy's) unless ``msgdef`` is given. ``write(topic, timestamp_ns, raw_bytes)`` appends one message.
    The bag is usable after ``close()`` (MCAP's summary is written then); use as a context manager.
    """

    def __init__(self, path: str | Path, *, typestore=None):
        self.path = Path(path)
        self.typestore = typestore if typestore is not None else get_typestore(Stores.ROS2_JAZZY)
        self._writer = Writer(self.path, version=9, storage_plugin=StoragePlugin.MCAP)
        self._writer.open()
        self._connections: dict = {}
        self._closed = False
        self.message_count = 0

    def add_topic(self, name: str, msgtype: str, serialization_format: str = "cdr", *, msgdef: str | None = None,
                  rihs01: str | None = None) -> None:
        if name in self._connections:
            conn = self._connections[name]
            if conn.msgtype != msgtype:
                raise ValueError(f"topic {name} already added with type {conn.msgtype}")
            return
        kwargs = {"msgdef": msgdef, "rihs01": rihs01} if msgdef is not None else {"typestore": self.typestore}
        self._connections[name] = self._writer.add_connection(name, msgtype,
                                                              serialization_format=serialization_format, **kwargs)

    @property
    def topics(self) -> list[str]:
        return list(self._connections)

    def write(self, topic: str, timestamp_ns: int, raw_bytes: bytes | bytearray | memoryview) -> None:
        if self._closed:
            raise RuntimeError("bag is closed")
        try:
            conn = self._connections[topic]
        except KeyError:
            raise KeyError(f"topic {topic!r} not added; call add_topic() first") from None
        self._writer.write(conn, int(timestamp_ns), bytes(raw_bytes) if isinstance(raw_bytes, bytearray) else raw_bytes)
        self.message_count += 1

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._writer.close()

    def __enter__(self) -> "RawBagWriter":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
