"""Simulated devices in one process: ONE ``hardware.sim.SimWorld`` (physics at real time) behind a camera node
per camera, the arm node and the hand node, all on one executor.

Also publishes the task's completion on ``/jala/sim/completion`` (std_msgs/String, JSON: subtasks, done flags,
ratio) twice a second and on request (``~/completion`` Trigger service, JSON in the message).

Parameters: task, variant, seed, render_width, render_height, camera_fps, world_options (JSON for
SimWorldConfig), camera_names (node names of the camera slots), sim_cameras (world camera per slot; '' = the
world's cameras in order), image_topics / info_topics (per slot), arm_joint_state_rate_hz,
hand_joint_state_rate_hz and the other arm_* / hand_* parameters (given to the arm / hand nodes without the prefix).
"""
from __future__ import annotations

import dataclasses
import json

from rclpy.node import Node
from std_msgs.msg import String
from std_srvs.srv import Trigger

from .arm_node import ArmNode
from .camera_node import CameraNode
from .conversions import LATCHED_QOS
from .devices import make_sim_world, pick_sim_cameras
from .hand_node import HandNode
from .node_utils import call_trigger, declare, init_ros, spin_nodes, startup_errors, unanswered
from .parameters import SIM_PREFIXES, SimDevicesConfig



def completion_dict(c) -> dict:
    if dataclasses.is_dataclass(c):
        d = dataclasses.asdict(c)
    elif isinstance(c, dict):
        d = dict(c)
    else:
        d = {"ratio": float(getattr(c, "ratio", float("nan")))}
    if "ratio" not in d and hasattr(c, "ratio"):
        d["ratio"] = float(c.ratio)
    return json.loads(json.dumps(d, default=lambda o: o.tolist() if hasattr(o, "tolist") else str(o)))


class SimWorldNode(Node):
    """Owns the SimWorld's lifetime and publishes its completion."""

    def __init__(self, name: str = "sim", namespace: str = "/jala", overrides: dict | None = None, world=None):
        super().__init__(name, namespace=namespace)
        self.p = declare(self, SimDevicesConfig, overrides)
        p = self.p
        n = len(p["camera_names"])
        if not (len(p["image_topics"]) == len(p["info_topics"]) == n):
            raise ValueError("camera_names, image_topics and info_topics must have one entry per camera")
        self.world = world or make_sim_world(p["task"], p["variant"], int(p["seed"]), int(p["render_width"]),
                                             int(p["render_height"]), float(p["camera_fps"]),
                                             p["world_options"] or None)
        sims = list(p["sim_cameras"]) + [""] * (n - len(p["sim_cameras"]))
        self.sim_cameras = pick_sim_cameras(list(self.world.cameras), sims[:n], n)
        self.completion_pub = self.create_publisher(String, "/jala/sim/completion", LATCHED_QOS)
        self.create_timer(0.5, self.publish_completion)
        self.create_service(Trigger, "~/completion", self._srv_completion)

    def completion(self) -> dict:
        """The task's completion, and how much simulated time the world gave up to keep up with the wall clock
        (``realtime_slip_s``: a CPU-starved run, in which the arm lags the chunks it is sent)."""
        d = completion_dict(self.world.completion())
        d["realtime_slip_s"] = round(float(getattr(self.world, "realtime_slip_s", 0.0)), 3)
        return d

    def publish_completion(self) -> None:
        try:
            self.completion_pub.publish(String(data=json.dumps(self.completion())))
        except Exception as exc:  # noqa: BLE001
            self.get_logger().error(f"completion failed: {exc}")

    def _srv_completion(self, _req, resp):
        try:
            resp.success, resp.message = True, json.dumps(self.completion())
        except Exception as exc:  # noqa: BLE001
            resp.success, resp.message = False, str(exc)
        return resp


def build_sim_nodes(overrides: dict | None = None, world=None, namespace: str = "/jala"):
    """(sim world node, [camera nodes], arm node, hand node) sharing one SimWorld, devices connected and the
    world running at real time. Used by ``main`` and by tests that need the node objects."""
    sim = SimWorldNode(namespace=namespace, overrides=overrides, world=world)
    p, w = sim.p, sim.world
    for dev in (w.arm, w.hand, *[w.cameras[c] for c in sim.sim_cameras]):
        connect = getattr(dev, "connect", None)
        if connect is not None:
            connect()
    w.start_realtime()
    cams = []
    for name, cam, img, info in zip(p["camera_names"], sim.sim_cameras, p["image_topics"], p["info_topics"]):
        cams.append(CameraNode(w.cameras[cam], name=f"camera_{name}", namespace=namespace,
                               overrides={"camera_name": name, "image_topic": img, "info_topic": info,
                                          "frame_id": f"{name}_color_optical_frame"}, allowed_parameters=set()))
    # the process's params file (checked by the sim node against SimDevicesConfig) reaches these nodes too
    def unprefixed(prefix: str) -> dict:
        assert prefix in SIM_PREFIXES
        return {k[len(prefix):]: v for k, v in p.items() if k.startswith(prefix)}

    arm = ArmNode(w.arm, namespace=namespace, overrides=unprefixed("arm_"), allowed_parameters=set())
    hand = HandNode(w.hand, namespace=namespace, overrides=unprefixed("hand_"), allowed_parameters=set())
    return sim, cams, arm, hand


def shutdown_world(world) -> None:
    for step in ("stop", "close"):
        try:
            getattr(world, step)()
        except Exception:  # noqa: BLE001
            pass


def expert_operator_node(sim: "SimWorldNode", namespace: str = "/jala"):
    """The world's scripted expert as a teleop operator (``operator: expert``): a TeleopNode whose source is
    ``teleop.sources.expert.ExpertOperator``. It presses START at the start of an episode, and SAVE when the task
    succeeded (DISCARD when its plan played out without success). After each episode the world resets with the
    next seed, the session forgets the stream, a hold from the failed attempt is cleared (``/jala/supervisor/reset``,
    as the operator would after a re-take) and the expert starts over. When the recorder did not answer START (not
    up yet, or restarted after a crash), nobody would record the demonstration: the expert discards whatever a
    lost answer may have started and starts the same seed over, instead of playing it unrecorded."""
    from teleop.sources.expert import ExpertOperator

    from .teleop_node import TeleopNode

    world = sim.world
    source = ExpertOperator(world)
    episode = [0]

    def next_episode(_saved: bool, advance: bool = True) -> None:
        episode[0] += int(advance)
        world.reset(int(sim.p["seed"]) + episode[0])
        node.session.reset()
        source.reset()
        ok, msg = call_trigger(reset_client, timeout=5.0)
        if not ok:
            node.get_logger().warning(f"supervisor reset before the next episode: {msg}")

    def start_failed(message: str) -> None:
        if unanswered(message):
            call_trigger(discard_client, timeout=5.0)
            next_episode(False, advance=False)

    options = json.loads(sim.p["operator_options"]) if sim.p["operator_options"].strip() else {}
    node = TeleopNode(source, name="teleop", namespace=namespace, overrides={**options, "source": "expert"},
                      allowed_parameters=set(), on_episode_end=next_episode, on_start_failed=start_failed)
    reset_client = node.side_node.create_client(Trigger, "/jala/supervisor/reset")
    discard_client = node.side_node.create_client(Trigger, f"{node.p['recorder'].rstrip('/')}/discard")
    return node


def main(args=None) -> None:
    init_ros(args)
    with startup_errors("sim_devices"):
        sim, cams, arm, hand = build_sim_nodes()
        extra = [expert_operator_node(sim)] if sim.p["operator"] == "expert" else []
        if sim.p["operator"] not in ("", "expert"):
            raise ValueError(f"operator must be '' or 'expert' in sim_devices, got {sim.p['operator']!r}")
    world = sim.world

    def _shutdown():
        for n in (*extra, *cams, arm, hand):
            try:
                n.destroy_node()
            except Exception:  # noqa: BLE001
                pass
        shutdown_world(world)

    spin_nodes([sim, *cams, arm, hand, *extra], on_shutdown=_shutdown)


if __name__ == "__main__":
    main()
