"""DDS environment for every JALA process: loopback only (127.0.0.1), via the Fast DDS profile in
``config/fastdds_loopback.xml``. Apply it BEFORE ``rclpy.init``.

ROS_AUTOMATIC_DISCOVERY_RANGE is set to SYSTEM_DEFAULT so that the XML profile alone decides the transports:
with LOCALHOST, rmw_fastrtps (Jazzy) adds its own UDPv4 transport without an interface whitelist next to the
profile's, and that one binds sockets on 0.0.0.0 and on every interface's address (checked with ``ss -unap``).
The profile itself restricts discovery to unicast on 127.0.0.1, which is what LOCALHOST is meant to do.
"""
from __future__ import annotations

import os
from collections.abc import Mapping

PROFILE_NAME = "fastdds_loopback.xml"


def profile_path() -> str:
    from .graph import config_dir  # not at import: this module needs no node parameters (jala_ros.parameters)

    return str(config_dir() / PROFILE_NAME)


def loopback_env(domain_id: int | None = None, base: Mapping[str, str] | None = None) -> dict[str, str]:
    """A copy of ``base`` (default os.environ) with the loopback DDS settings (and ROS_DOMAIN_ID if given)."""
    env = dict(os.environ if base is None else base)
    xml = profile_path()
    env["FASTRTPS_DEFAULT_PROFILES_FILE"] = xml
    env["FASTDDS_DEFAULT_PROFILES_FILE"] = xml
    env["RMW_IMPLEMENTATION"] = "rmw_fastrtps_cpp"
    env["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "SYSTEM_DEFAULT"
    env.pop("ROS_LOCALHOST_ONLY", None)  # deprecated; =1 would force LOCALHOST (see above)
    env.pop("ROS_STATIC_PEERS", None)
    if domain_id is not None:
        if not 0 <= int(domain_id) <= 101:
            raise ValueError(f"ROS_DOMAIN_ID must be 0..101, got {domain_id}")
        env["ROS_DOMAIN_ID"] = str(int(domain_id))
    return env


def apply_loopback_env(domain_id: int | None = None) -> dict[str, str]:
    """Set the loopback DDS settings in this process's environment (call before rclpy.init)."""
    env = loopback_env(domain_id)
    for k in ("ROS_LOCALHOST_ONLY", "ROS_STATIC_PEERS"):
        os.environ.pop(k, None)
    os.environ.update({k: env[k] for k in ("FASTRTPS_DEFAULT_PROFILES_FILE", "FASTDDS_DEFAULT_PROFILES_FILE",
                                           "RMW_IMPLEMENTATION", "ROS_AUTOMATIC_DISCOVERY_RANGE")})
    if domain_id is not None:
        os.environ["ROS_DOMAIN_ID"] = env["ROS_DOMAIN_ID"]
    return env


def open_file_targets(pid: int) -> list[str]:
    """What the open file descriptors of process ``pid`` point to (paths, ``socket:[inode]``, ...), from /proc;
    descriptors closed meanwhile are left out."""
    fd_dir = f"/proc/{pid}/fd"
    out = []
    for fd in os.listdir(fd_dir):
        try:
            out.append(os.readlink(os.path.join(fd_dir, fd)))
        except OSError:
            continue
    return out


def udp_sockets(pid: int | None = None) -> list[str]:
    """Local addresses of the UDP sockets of process ``pid`` (default: this one), from /proc (no ``ss``)."""
    import socket
    import struct

    pid = os.getpid() if pid is None else pid
    inodes = {t[8:-1] for t in open_file_targets(pid) if t.startswith("socket:[")}
    out = []
    for table, family in (("udp", socket.AF_INET), ("udp6", socket.AF_INET6)):
        try:
            lines = open(f"/proc/{pid}/net/{table}").read().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            parts = line.split()
            if parts[9] not in inodes:
                continue
            addr_hex, port_hex = parts[1].split(":")
            if family == socket.AF_INET:
                addr = socket.inet_ntop(family, struct.pack("<I", int(addr_hex, 16)))
            else:
                addr = socket.inet_ntop(family, b"".join(struct.pack("<I", int(addr_hex[i:i + 8], 16))
                                                         for i in range(0, 32, 8)))
            out.append(f"{addr}:{int(port_hex, 16)}")
    return out
