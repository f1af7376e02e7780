"""Recorder node: records demonstration episodes into a LeRobot v3.0 dataset, and the raw topics of each episode
into a rosbag2 (MCAP) next to it.

- Subscribes (raw, serialized: what arrives is what the bag stores) the camera image topics, the arm and hand
  joint states and the operator's clean command (``/jala/teleop/command``, sensor_msgs/JointState with the 13
  chunk joints: the recorded action; executed commands may carry DART noise). Messages are deserialized only when
  a frame needs them.
- A recording thread samples the newest inputs at ``fps`` (``training.recording.recorder.EpisodeRecorder``):
  ``observation.images.<camera>``, ``observation.state`` (7 FR3 joints + 6 Inspire angles), ``action``.
- Services ``~/start`` (the task instruction: the ``instruction`` parameter or the latest ``/jala/instruction``),
  ``~/save`` and ``~/discard`` (std_srvs/Trigger); the operator's buttons arrive the same way (the teleop node
  calls them). ``~/status`` (std_msgs/String) and the log carry the live status line: episode n / N, elapsed,
  frames, dropped frames.
- Crash safety is the dataset writer's: a killed recorder loses at most the episode in progress, and a restarted
  one appends to the same dataset.
"""
from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
from rclpy.node import Node
from rclpy.serialization import deserialize_message
from sensor_msgs.msg import Image, JointState
from std_msgs.msg import String
from std_srvs.srv import Trigger

from embodiment import ARM_JOINT_NAMES, CHUNK_JOINT_NAMES, HAND_JOINT_NAMES

from .conversions import IMAGE_SUB_QOS, LATCHED_QOS, STATE_QOS, from_time_msg, image_to_array, joint_positions
from .node_utils import declare, interrupts_deferred, run_node
from .parameters import RecorderNodeConfig

_TYPES = {Image: "sensor_msgs/msg/Image", JointState: "sensor_msgs/msg/JointState"}


class RecorderNode(Node):
    def __init__(self, name: str = "recorder", namespace: str = "/jala", overrides: dict | None = None,
                 **node_kwargs):
        super().__init__(name, namespace=namespace, **node_kwargs)
        self.p = p = declare(self, RecorderNodeConfig, overrides)
        from training.recording.lerobot_v3 import LeRobotV3Writer, robot_features
        from training.recording.recorder import EpisodeRecorder

        if not p["dataset"]:
            raise ValueError("parameter 'dataset' is empty: give the folder of the LeRobot dataset to record into")
        if len(p["camera_names"]) != len(p["image_topics"]):
            raise ValueError("camera_names and image_topics need one entry per camera")
        if not p["fps"] > 0:
            raise ValueError(f"fps must be positive, got {p['fps']}")
        self.root = Path(p["dataset"]).expanduser()
        self.size = (int(p["image_height"]), int(p["image_width"]))
        if (self.root / "meta" / "info.json").is_file():
            self.writer = LeRobotV3Writer.open(self.root)
            self.get_logger().info(f"appending to {self.root} ({self.writer.num_episodes} episode(s) there)")
        else:
            self.writer = LeRobotV3Writer.create(self.root, fps=round(p["fps"]), features=robot_features(
                {c: self.size for c in p["camera_names"]}))
        self.recorder = EpisodeRecorder(self.writer, list(p["camera_names"]), episodes_target=int(p["episodes"]),
                                        decode=self._decode_image)
        self.instruction = p["instruction"]
        self._lock = threading.Lock()
        self._raw_images: dict[str, bytes] = {}
        self._bag = None
        self._bag_lock = threading.Lock()
        topics = {t: Image for t in p["image_topics"]}
        topics.update({p["arm_state_topic"]: JointState, p["hand_state_topic"]: JointState,
                       p["command_topic"]: JointState})
        self._topics = topics
        for cam, topic in zip(p["camera_names"], p["image_topics"]):
            self.create_subscription(Image, topic, lambda raw, c=cam, t=topic: self._on_image(c, t, raw),
                                     IMAGE_SUB_QOS, raw=True)
        self.create_subscription(JointState, p["arm_state_topic"], lambda raw: self._on_state("arm", raw),
                                 STATE_QOS, raw=True)
        self.create_subscription(JointState, p["hand_state_topic"], lambda raw: self._on_state("hand", raw),
                                 STATE_QOS, raw=True)
        self.create_subscription(JointState, p["command_topic"], self._on_command, STATE_QOS, raw=True)
        self.create_subscription(String, p["instruction_topic"], self._on_instruction, LATCHED_QOS)
        self._arm = self._hand = None
        self.status_pub = self.create_publisher(String, "~/status", LATCHED_QOS)
        self.create_service(Trigger, "~/start", self._srv_start)
        self.create_service(Trigger, "~/save", self._srv_save)
        self.create_service(Trigger, "~/discard", self._srv_discard)
        self.create_timer(1.0 / p["status_rate_hz"], self._publish_status)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._record_loop, name="recorder", daemon=True)
        self._thread.start()
        self.get_logger().info(f"recording into {self.root} at {p['fps']:g} fps: cameras {list(p['camera_names'])}")

    # ------------------------------------------------------------------------------------------ inputs
    def _bag_write(self, topic: str, raw: bytes) -> None:
        with self._bag_lock:
            if self._bag is not None:
                self._bag.write(topic, time.time_ns(), raw)

    def _on_image(self, camera: str, topic: str, raw: bytes) -> None:
        self._bag_write(topic, raw)
        msg = deserialize_message(raw, Image)  # decoded into pixels only when a recorded frame uses it
        self.recorder.set_image(camera, from_time_msg(msg.header.stamp), msg)

    def _decode_image(self, msg: Image) -> np.ndarray:
        img = image_to_array(msg)
        if img.shape[:2] != self.size:  # the dataset's image size is fixed when it is created
            from PIL import Image as PILImage

            img = np.asarray(PILImage.fromarray(img).resize((self.size[1], self.size[0]), PILImage.BILINEAR))
        return img

    def _on_state(self, which: str, raw: bytes) -> None:
        topic = self.p["arm_state_topic"] if which == "arm" else self.p["hand_state_topic"]
        self._bag_write(topic, raw)
        msg = deserialize_message(raw, JointState)
        with self._lock:
            if which == "arm":
                self._arm = joint_positions(msg, ARM_JOINT_NAMES)
            else:
                self._hand = joint_positions(msg, HAND_JOINT_NAMES)
            if self._arm is not None and self._hand is not None:
                self.recorder.set_state(np.concatenate([self._arm, self._hand]))

    def _on_command(self, raw: bytes) -> None:
        self._bag_write(self.p["command_topic"], raw)
        self.recorder.set_action(joint_positions(deserialize_message(raw, JointState), CHUNK_JOINT_NAMES))

    def _on_instruction(self, msg: String) -> None:
        if msg.data.strip():
            self.instruction = msg.data

    # ------------------------------------------------------------------------------------------ episodes
    def start_episode(self) -> tuple[bool, str]:
        with interrupts_deferred():  # never a raw bag on disk that the node does not know of
            return self._start_episode()

    def _start_episode(self) -> tuple[bool, str]:
        ok, msg = self.recorder.start(self.instruction)
        if ok and self.p["raw_bag"]:
            from training.recording.rosbag import RawBagWriter

            path = self.root / "raw" / f"episode_{self.writer.num_episodes:06d}"
            if path.exists():  # left by a crashed recorder: that episode was never saved
                import shutil

                shutil.rmtree(path)
            bag = RawBagWriter(path)
            for topic, msg_type in self._topics.items():
                bag.add_topic(topic, _TYPES[msg_type])
            with self._bag_lock:
                self._bag = bag
        self.get_logger().info(msg)
        return ok, msg

    def _close_bag(self, keep: bool) -> None:
        with self._bag_lock:
            bag, self._bag = self._bag, None
        if bag is not None:
            bag.close()
            if not keep:
                import shutil

                shutil.rmtree(bag.path, ignore_errors=True)

    def save_episode(self) -> tuple[bool, str]:
        with interrupts_deferred():  # Ctrl-C during a save lets it finish (or fail whole), then shuts down
            ok, msg = self.recorder.save()
            self._close_bag(keep=ok)
        if ok:  # separate call sites: rclpy refuses one call site logging at two severities
            self.get_logger().info(msg)
        else:
            self.get_logger().error(msg)
        return ok, msg

    def discard_episode(self) -> tuple[bool, str]:
        with interrupts_deferred():
            ok, msg = self.recorder.discard()
            self._close_bag(keep=False)
        self.get_logger().info(msg)
        return ok, msg

    def _srv_start(self, _req, resp):
        resp.success, resp.message = self.start_episode()
        return resp

    def _srv_save(self, _req, resp):
        resp.success, resp.message = self.save_episode()
        return resp

    def _srv_discard(self, _req, resp):
        resp.success, resp.message = self.discard_episode()
        return resp

    def _record_loop(self) -> None:
        period = 1.0 / float(self.p["fps"])
        next_t = time.monotonic()
        while not self._stop.is_set():
            try:
                self.recorder.tick()
            except Exception as exc:  # noqa: BLE001 - reported; the episode in progress is dropped
                self.get_logger().error(f"recording failed: {exc}; discarding the episode")
                self.discard_episode()
            next_t += period
            delay = next_t - time.monotonic()
            if delay < -period:
                next_t = time.monotonic()
            elif delay > 0:
                time.sleep(delay)

    def _publish_status(self) -> None:
        """``~/status``: JSON, the status fields plus ``line`` (the human-readable status line)."""
        import dataclasses
        import json

        st = self.recorder.status()
        self.status_pub.publish(String(data=json.dumps({**dataclasses.asdict(st), "line": st.line()})))
        if st.recording:
            self.get_logger().info(st.line())

    def destroy_node(self):
        self._stop.set()
        self._thread.join(timeout=2.0)
        # a clean shutdown keeps nothing half-recorded: the episode in progress, or one requested and still waiting
        # for fresh inputs (its raw bag is already open), is dropped
        if self.recorder.recording or self.recorder.starting:
            self.discard_episode()  # closes and deletes its raw bag
        self.writer.close()
        return super().destroy_node()


def main(args=None) -> None:
    run_node(RecorderNode, "recorder", args)


if __name__ == "__main__":
    main()
