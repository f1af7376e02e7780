"""Small rclpy helpers shared by the nodes."""
from __future__ import annotations

import signal
import threading
import time
from typing import Any

import rclpy
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rclpy.executors import ExternalShutdownException, MultiThreadedExecutor
from rclpy.node import Node

DIAGNOSTICS_TOPIC = "/diagnostics"
HOLD_TOPIC = "/jala/hold"
STATUS_TOPIC = "/jala/status"
CHUNK_TOPIC = "/jala/action_chunk"
ARM_STATE_TOPIC = "/jala/arm/joint_states"
HAND_STATE_TOPIC = "/jala/hand/joint_states"
POLICY_RUNNING_TOPIC = "/jala/policy/running"

OK, WARN, ERROR, STALE = 0, 1, 2, 3  # diagnostic_msgs levels (the message constants are bytes)


def declare(node: Node, defaults: dict[str, Any], overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """Declare every parameter of ``defaults`` (overrides win over defaults; launch/params files win over both)
    and return the effective values."""
    overrides = overrides or {}
    out = {}
    for name, default in defaults.items():
        value = overrides.get(name, default)
        node.declare_parameter(name, value)
        out[name] = node.get_parameter(name).value
    return out


def now_s(node: Node) -> float:
    return node.get_clock().now().nanoseconds * 1e-9


class MonotonicToRosTime:
    """Maps ``time.monotonic()`` stamps (device readings, frame arrivals) onto a node's ROS clock.

    The offset between the clocks is measured between two monotonic reads; a measurement whose reads lie more
    than ``max_bracket_s`` apart (the thread was preempted in between) is not used, so the mapping does not
    jitter by a scheduler time slice and stamps of one stream do not run backwards."""

    def __init__(self, node: Node, max_bracket_s: float = 2e-4):
        self._node = node
        self._max_bracket_s = max_bracket_s
        self._offset: float | None = None

    def offset(self) -> float:
        """ROS time minus monotonic time, in seconds."""
        for _ in range(3):
            m0 = time.monotonic()
            ros = now_s(self._node)
            m1 = time.monotonic()
            if m1 - m0 <= self._max_bracket_s or self._offset is None:
                self._offset = ros - 0.5 * (m0 + m1)
                break
        return self._offset

    def __call__(self, monotonic_stamp: float) -> float:
        return monotonic_stamp + self.offset()


def diag_status(name: str, level: int, message: str, hardware_id: str = "", **values: Any) -> DiagnosticStatus:
    st = DiagnosticStatus()
    st.level = bytes([level]) if isinstance(level, int) else level
    st.name = name
    st.message = message
    st.hardware_id = hardware_id
    st.values = [KeyValue(key=str(k), value=str(v)) for k, v in values.items()]
    return st


def diag_array(node: Node, *statuses: DiagnosticStatus) -> DiagnosticArray:
    arr = DiagnosticArray()
    arr.header.stamp = node.get_clock().now().to_msg()
    arr.status = list(statuses)
    return arr


def level_of(status: DiagnosticStatus) -> int:
    lv = status.level
    return lv[0] if isinstance(lv, (bytes, bytearray)) else int(lv)


def values_of(status: DiagnosticStatus) -> dict[str, str]:
    return {kv.key: kv.value for kv in status.values}


def init_ros(args=None) -> None:
    """rclpy.init without rclpy's signal handlers: SIGINT/SIGTERM raise KeyboardInterrupt in the main thread, so
    the node threads and devices are stopped (arm/hand hold) BEFORE the ROS context goes away."""
    from rclpy.signals import SignalHandlerOptions

    rclpy.init(args=args, signal_handler_options=SignalHandlerOptions.NO)

    def _interrupt(*_):
        raise KeyboardInterrupt

    signal.signal(signal.SIGINT, _interrupt)
    signal.signal(signal.SIGTERM, _interrupt)


def spin_nodes(nodes: list[Node], num_threads: int = 4, on_shutdown=None) -> None:
    """Spin ``nodes`` on one MultiThreadedExecutor until SIGINT/SIGTERM, then clean up (``on_shutdown`` first,
    while the context is still valid)."""
    executor = MultiThreadedExecutor(num_threads=num_threads)
    for n in nodes:
        executor.add_node(n)
    try:
        executor.spin()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        if on_shutdown:
            on_shutdown()
        for n in nodes:
            try:
                n.destroy_node()
            except Exception:  # noqa: BLE001
                pass
        executor.shutdown(timeout_sec=1.0)
        if rclpy.ok():
            rclpy.try_shutdown()


def wait_for(cond, timeout: float, period: float = 0.02) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return True
        time.sleep(period)
    return cond()


class HoldListener:
    """Subscribes the latched hold topic on its OWN node and executor thread, so a hold command is not queued
    behind the owner's other callbacks (joint-state timers, chunks, diagnostics) in a busy executor."""

    def __init__(self, owner: Node, topic: str, callback):
        from rclpy.executors import SingleThreadedExecutor
        from std_msgs.msg import Bool

        from .conversions import LATCHED_QOS

        # use_global_arguments=False: a command-line `-r __node:=...` must not rename this node like its owner
        self.node = Node(f"{owner.get_name()}_hold_listener", namespace=owner.get_namespace(),
                         context=owner.context, start_parameter_services=False, use_global_arguments=False)
        self.node.create_subscription(Bool, topic, callback, LATCHED_QOS)
        self.executor = SingleThreadedExecutor(context=owner.context)
        self.executor.add_node(self.node)
        self._thread = threading.Thread(target=self._spin, name=f"{owner.get_name()}-hold", daemon=True)
        self._thread.start()

    def _spin(self) -> None:
        try:
            self.executor.spin()
        except Exception:  # noqa: BLE001 - context shut down
            pass

    def close(self) -> None:
        self.executor.shutdown(timeout_sec=1.0)
        try:
            self.node.destroy_node()
        except Exception:  # noqa: BLE001
            pass
