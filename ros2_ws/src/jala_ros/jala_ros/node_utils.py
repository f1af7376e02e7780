"""Small rclpy helpers shared by the nodes."""
from __future__ import annotations

import contextlib
import faulthandler
import os
import signal
import sys
import threading
import time
from typing import Any

import rclpy
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.node import Node

from .parameters import (ARM_STATE_TOPIC, CHUNK_TOPIC, DIAGNOSTICS_TOPIC, HAND_STATE_TOPIC,  # noqa: F401
                         HOLD_REQUEST_TOPIC, HOLD_TOPIC, POLICY_RUNNING_TOPIC, STATUS_TOPIC, check_known,
                         defaults_of)

OK, WARN, ERROR, STALE = 0, 1, 2, 3  # diagnostic_msgs levels (the message constants are bytes)


def declare(node: Node, config: type | dict[str, Any], overrides: dict[str, Any] | None = None,
            allowed: set[str] | frozenset[str] | None = None) -> dict[str, Any]:
    """Declare every field of the node config dataclass ``config`` (``jala_ros.parameters``; a {name: default}
    dict is accepted too) as a ROS parameter of the same name (overrides win over the field defaults;
    launch/params files win over both) and return the effective values as a dict keyed by field name.

    ``allowed``: the parameter names the whole process accepts (default: the config's names); a launch/params
    file or ``-p`` override outside them raises UnknownParameterError naming it. ``set()`` skips the check (a
    node sharing its process's params file with others, checked by the process's owner node)."""
    defaults = config if isinstance(config, dict) else defaults_of(config)
    overrides = overrides or {}
    check_known(overrides, defaults, f"node {node.get_fully_qualified_name()} (overrides)")
    given = getattr(node, "_parameter_overrides", {})  # rclpy: the overrides from the command line / params files
    if allowed is None or allowed:
        check_known(given, set(defaults) if allowed is None else allowed, f"node {node.get_fully_qualified_name()}")
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


def init_ros(args=None, exit_with_parent: bool = True) -> None:
    """rclpy.init without rclpy's signal handlers: SIGINT/SIGTERM raise KeyboardInterrupt in the main thread, so
    the node threads and devices are stopped (arm/hand hold) BEFORE the ROS context goes away.

    ``exit_with_parent``: a process whose parent (the runner, ``ros2 launch``) dies, even by SIGKILL, sends
    itself SIGTERM and so shuts down the same way (never an orphan that keeps publishing). Also prints the
    network exposure warning of ``dds_security`` when DDS leaves this machine without DDS Security."""
    from rclpy.signals import SignalHandlerOptions

    from .dds_security import exposure_warning

    rclpy.init(args=args, signal_handler_options=SignalHandlerOptions.NO)

    def _interrupt(*_):
        # one orderly shutdown: a second signal (Ctrl-C twice, PR_SET_PDEATHSIG plus the parent watch) must not
        # abort the cleanup half-way (devices not held, DDS shared memory left behind); SIGKILL still works
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        raise KeyboardInterrupt

    signal.signal(signal.SIGINT, _interrupt)
    signal.signal(signal.SIGTERM, _interrupt)
    # SIGUSR1 prints every thread's stack to stderr (the node's log): the runner sends it to a process that does
    # not end after SIGINT, before it terminates it, so the log shows where the shutdown hung
    faulthandler.register(signal.SIGUSR1, all_threads=True)
    if exit_with_parent:
        watch_parent()
    warning = exposure_warning()
    if warning:
        print(warning, file=sys.stderr, flush=True)


ORPHAN_EXIT_GRACE_S = 6.0  # parent gone -> own shutdown (hold, DDS clean-up) must end within this, or SIGKILL


def watch_parent(period: float = 0.1, grace_s: float = ORPHAN_EXIT_GRACE_S) -> None:
    """SIGTERM to this process once its parent is gone (re-parented to init or a subreaper). What the runner does
    to a node process that does not end on SIGINT, this does once the runner is gone: still running ``grace_s``
    after that SIGTERM (its shutdown hangs), it prints its threads' stacks to stderr (its log) and SIGKILLs itself,
    so no orphan outlives its runner."""
    parent = os.getppid()
    if parent <= 1:
        return

    def _watch():
        while os.getppid() == parent:
            time.sleep(period)
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(grace_s)
        print(f"pid {os.getpid()}: still running {grace_s:.0f} s after its parent (pid {parent}) died; the stacks of "
              "its threads follow, then it kills itself", file=sys.stderr, flush=True)
        faulthandler.dump_traceback(file=sys.stderr, all_threads=True)
        os.kill(os.getpid(), signal.SIGKILL)

    threading.Thread(target=_watch, name="parent-watch", daemon=True).start()


@contextlib.contextmanager
def startup_errors(label: str):
    """Around a node process's start-up: an expected error (bad or unknown parameters, a missing or broken
    checkpoint, a device that cannot be opened) ends the process with ONE line on stderr and exit code 2,
    not a traceback."""
    from hardware.interfaces import DeviceError

    try:
        yield
    except (ValueError, OSError, DeviceError) as exc:  # ConfigError, UnknownParameterError, FileNotFoundError, ...
        print(f"{label}: cannot start: {exc}", file=sys.stderr, flush=True)
        _shutdown_and_join()
        raise SystemExit(2) from None
    except KeyboardInterrupt:
        _shutdown_and_join()
        raise SystemExit(130) from None


@contextlib.contextmanager
def interrupts_deferred():
    """A block that Ctrl-C or SIGTERM does not cut in half: ``init_ros`` turns those signals into a
    KeyboardInterrupt raised wherever the main thread is, which inside a service callback could leave an episode
    half-saved or a raw bag created but untracked. A signal arriving inside the block is handed to the handler
    it would have reached once the block ends. Off the main thread (where no signal is delivered) a no-op."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught: list[tuple[int, Any]] = []
    previous = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    if any(h is None for h in previous.values()):  # a handler installed outside Python: it cannot be put back
        yield
        return
    for s in previous:
        signal.signal(s, lambda signum, frame: caught.append((signum, frame)))
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        if caught:
            signum, frame = caught[0]
            if callable(previous[signum]):
                previous[signum](signum, frame)
            elif previous[signum] == signal.SIG_DFL:  # e.g. SIGTERM with no handler: the default, terminate
                os.kill(os.getpid(), signum)


def _shutdown_and_join(timeout: float = 2.0) -> None:
    """Shut ROS down and let the threads spinning helper nodes end: a process that exits while one of them is
    still inside the rcl wait set aborts in C++ ("terminate called without an active exception", exit 134)."""
    rclpy.try_shutdown()
    end = time.monotonic() + timeout
    for t in threading.enumerate():
        if t is not threading.current_thread() and t.is_alive():
            t.join(timeout=max(0.0, end - time.monotonic()))


def run_node(node_cls, name: str, args=None) -> None:
    """A process running one node: ROS up, ``node_cls(name=name)`` built (an expected start-up error is one line
    and exit 2), spun until shutdown."""
    init_ros(args)
    with startup_errors(f"{name}_node"):
        node = node_cls(name=name)
    spin_nodes([node])


def make_executor(context=None) -> SingleThreadedExecutor:
    """The executor that every node process, helper node and monitor here spins on: one thread.

    Not rclpy's MultiThreadedExecutor: in rclpy 7.1.6 (the newest ros-jazzy-rclpy wheel) its spin loop hands a
    callback that is still queued in the thread pool to the pool again and again without waiting
    (ros2/rclpy#1452, fixed by #1547 after that release); holding the GIL, it starves the pool, and a subscriber
    of a 200 Hz joint-state topic falls to a few messages per second at 100% CPU. The callbacks here are short
    (keep the newest message, publish, answer a service); slow work (inference, device I/O, frame capture) runs
    on threads of its own, and what must not wait behind the other callbacks (a hold command, the responses a
    callback waits for) runs on a ``SideNode``."""
    return SingleThreadedExecutor(context=context)


def spin_nodes(nodes: list[Node], on_shutdown=None) -> None:
    """Spin ``nodes`` on one executor (``make_executor``) until SIGINT/SIGTERM, then clean up (``on_shutdown``
    first, while the context is still valid)."""
    executor = make_executor()
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


def log_at(logger, level: str, message: str) -> None:
    """Log at ``level`` ("info" | "warn" | "error"). rclpy ties a severity to each call site ("Logger severity
    cannot be changed between calls"), so each level has its own line here."""
    if level == "error":
        logger.error(message)
    elif level == "warn":
        logger.warning(message)
    else:
        logger.info(message)


class BackgroundSpin:
    """Spins ``nodes`` on an executor of their own (``make_executor``) in a daemon thread until ``close()``.

    An exception in a callback is printed and spinning goes on: the thread must not die silently (a hold listener
    that stopped listening would let the robot move on after a hold)."""

    def __init__(self, nodes: list[Node], context=None, name: str = "ros-spin"):
        self.executor = make_executor(context=context)
        self._closed = False
        for n in nodes:
            self.executor.add_node(n)
        self._thread = threading.Thread(target=self._spin, name=name, daemon=True)
        self._thread.start()

    def _spin(self) -> None:
        import traceback

        while not self._closed:
            try:
                self.executor.spin()
                return
            except Exception:  # noqa: BLE001 - context shut down, or a callback raised
                if self._closed or not self.executor.context.ok():
                    return
                print(f"[{self._thread.name}] a callback raised; spinning on:\n{traceback.format_exc()}",
                      file=sys.stderr, flush=True)

    def close(self, timeout: float = 1.0) -> None:
        self._closed = True
        self.executor.shutdown(timeout_sec=timeout)
        self._thread.join(timeout=timeout + 1.0)


class SideNode:
    """A helper node of ``owner`` on its own executor thread, for what must not wait behind the owner's callbacks
    (a hold command) or what one of the owner's callbacks waits for (the response of a service it calls)."""

    def __init__(self, owner: Node, suffix: str):
        # use_global_arguments=False: a command-line `-r __node:=...` must not rename this node like its owner
        self.node = Node(f"{owner.get_name()}_{suffix}", namespace=owner.get_namespace(), context=owner.context,
                         start_parameter_services=False, use_global_arguments=False)
        self._spin = BackgroundSpin([self.node], context=owner.context, name=f"{owner.get_name()}-{suffix}")

    def close(self) -> None:
        self._spin.close()
        try:
            self.node.destroy_node()
        except Exception:  # noqa: BLE001
            pass


class HoldListener(SideNode):
    """Subscribes the latched hold topic on a side node, so a hold command is not queued behind the owner's other
    callbacks (chunks, diagnostics, services)."""

    def __init__(self, owner: Node, topic: str, callback):
        from std_msgs.msg import Bool

        from .conversions import LATCHED_QOS

        super().__init__(owner, "hold_listener")
        self.node.create_subscription(Bool, topic, callback, LATCHED_QOS)


NO_ANSWER = "did not answer"  # in call_trigger's message when the service never answered (see unanswered())


def call_trigger(client, timeout: float) -> tuple[bool, str]:
    """Call a std_srvs/Trigger service through ``client`` and wait for the answer (the client's node must be
    spun by another thread than the caller's). When the service did not answer, the message says so
    (``unanswered(message)``): it was not there, or the request was lost (a server killed and restarted under the
    same name can keep a stale discovery entry for a while, so a request goes to the dead one)."""
    from std_srvs.srv import Trigger

    if not client.wait_for_service(timeout_sec=timeout):
        return False, f"{client.srv_name} {NO_ANSWER}: it is not available"
    fut = client.call_async(Trigger.Request())
    if not wait_for(fut.done, timeout, period=0.005):
        client.remove_pending_request(fut)
        return False, f"{client.srv_name} {NO_ANSWER} within {timeout:g} s"
    return fut.result().success, fut.result().message


def unanswered(message: str) -> bool:
    """True when ``message`` is call_trigger's for a service that never answered (not a refusal by the service)."""
    return NO_ANSWER in message
