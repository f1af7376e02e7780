"""Remove the Fast DDS shared-memory files that processes killed with SIGKILL leave in /dev/shm.

Plain Python (no rclpy); Linux only (elsewhere both functions return ``[]``). Call it before starting nodes:

    from jala_bringup.shm_cleanup import remove_stale_fastdds_segments
    removed = remove_stale_fastdds_segments(log=print)

What Fast DDS creates (2.14.x, the ``ros-fastrtps`` wheel: prefix ``fastrtps``; 3.x: prefix ``fastdds``), per
participant with the SHM transport:

- ``<prefix>_<16 hex>``: the participant's segment (the profile's ``segment_size`` plus allocator overhead);
- ``<prefix>_<16 hex>_el``: its lock file, empty, holding an exclusive ``flock`` for the life of the segment.
  Fast DDS locks it BEFORE it creates the segment and removes the segment BEFORE it releases it
  (``SharedMemManager::Segment``), and a peer that maps the segment treats it as dead as soon as the lock can
  be taken (``SegmentWrapper::check_alive`` -> ``RobustExclusiveLock::is_locked``);
- per listening port N: ``<prefix>_port<N>`` (the port's queue), ``<prefix>_port<N>_el`` (unicast port, exclusive
  ``flock`` held by its one listener) or ``<prefix>_port<N>_sl`` (multicast port, shared ``flock`` held by every
  listener), and ``sem.<prefix>_port<N>_mutex``: the POSIX named semaphore that Fast DDS holds while it opens,
  resets or removes that port (``SharedMemGlobal::open_port_internal`` / ``Port::~Port``). A port is a zombie
  when a lock file exists that nobody holds (``SharedMemGlobal::Port::is_zombie``); Fast DDS resets it then.

Liveness rule (the one ``fastdds shm clean`` uses, tools/fastdds/shm/clean.py in eProsima/Fast-DDS): a segment or
port is stale when its ``_el`` / ``_sl`` lock file can be ``flock``-ed ``LOCK_EX | LOCK_NB``; the kernel drops a
dead process's flocks, so a lock file that nobody holds has no living owner, whichever user or ROS graph it
belonged to. Differences from the tool, all on the safe side:

- the lock is KEPT while the files are unlinked (the tool tests, releases, then deletes), and the lock file must
  still be the inode that was locked. A Fast DDS process creating a segment of that name either fails its
  ``flock`` (it then picks another name) or finds its file unlinked and creates it again (``open_and_lock_file``);
- for a port, the port's named semaphore is taken (``sem_trywait``) before its lock files are tested and held
  until the files are gone, as Fast DDS itself does; ``Port::is_zombie`` briefly creates and removes an unlocked
  ``_el`` file while the opening process holds that semaphore, which the tool could mistake for a dead port.
  A semaphore that is held (a process is opening the port, or died doing so) means: leave the port this time;
- a port with both ``_el`` and ``_sl`` is stale only if neither is held;
- lock files are opened read-only without ``O_CREAT``, only regular files are touched, nothing needs root: a
  lock file that cannot be opened, or files that cannot be unlinked (another user's, in the sticky /dev/shm),
  are left in place.

Left alone, as the tool leaves them: segments / ports without a lock file (the owner died between creating the
segment and locking it, or a writer-only user of a port died; Fast DDS resets such a port when it reopens it),
semaphores without a port, data-sharing segments ``fast_datasharing_*`` (no lock file; ``fastdds shm clean
--force`` deletes them without a liveness test; rmw_fastrtps with the JALA profile creates none) and files
that are not Fast DDS's (``lttng-ust-wait-*`` from the LTTng tracer).
"""
from __future__ import annotations

import ctypes
import errno
import fcntl
import os
import re
import stat
import sys
from collections.abc import Callable
from contextlib import ExitStack

SHM_DIR = "/dev/shm"
PREFIXES = ("fastrtps", "fastdds")  # Fast DDS 2.x, 3.x

_SEGMENT_LOCK_RE = re.compile(r"^((?:fastrtps|fastdds)_[0-9a-f]{16})_(el|sl)$")
_PORT_LOCK_RE = re.compile(r"^((?:fastrtps|fastdds)_port\d{1,5})_(el|sl)$")

Log = Callable[[str], None]


def stale_fastdds_segments() -> list[str]:
    """Paths of the Fast DDS shared-memory files in /dev/shm whose owner process is gone (nothing removed).

    Segments: ``<prefix>_<id>`` and its ``_el`` lock file; ports: ``<prefix>_port<N>``, its ``_el`` / ``_sl``
    lock file(s) and ``sem.<prefix>_port<N>_mutex`` (only the files that exist). Sorted. The test takes each
    lock for a moment (as Fast DDS's own liveness check does); a port whose semaphore is held is not listed.
    """
    return sorted(_scan(remove=False, log=None))


def remove_stale_fastdds_segments(log: Log | None = None) -> list[str]:
    """Remove the files :func:`stale_fastdds_segments` lists; return the paths actually removed (sorted).

    Never touches a segment or port whose lock a living process holds. ``log`` (e.g. ``print`` or a logger's
    ``info``) gets one line per removed segment / port and per file that could not be removed.
    """
    return sorted(_scan(remove=True, log=log))


# --------------------------------------------------------------------------------------------------------------

def _scan(remove: bool, log: Log | None) -> list[str]:
    if not sys.platform.startswith("linux"):
        return []
    try:
        names = os.listdir(SHM_DIR)
    except OSError:
        return []
    segments: dict[str, list[str]] = {}
    ports: dict[str, list[str]] = {}
    for name in names:
        for regex, groups in ((_SEGMENT_LOCK_RE, segments), (_PORT_LOCK_RE, ports)):
            m = regex.match(name)
            if m:
                groups.setdefault(m.group(1), []).append(name)
    out: list[str] = []
    for base, locks in sorted(segments.items()):
        out += _handle(base, sorted(locks), mutex=None, remove=remove, log=log)
    for base, locks in sorted(ports.items()):
        out += _handle(base, sorted(locks), mutex=f"{base}_mutex", remove=remove, log=log)
    return out


def _path(name: str) -> str:
    return os.path.join(SHM_DIR, name)


def _handle(base: str, locks: list[str], mutex: str | None, remove: bool, log: Log | None) -> list[str]:
    """Test (and with ``remove`` delete) one segment or port; returns its stale / removed file paths."""
    with ExitStack() as held:
        if mutex is not None:
            sem = _PortMutex.acquire(mutex, create=remove)
            if sem is False:
                return []  # held by someone (opening / removing the port), or not ours to take: leave it
            if sem is not None:
                held.callback(sem.release)
        held_locks = []
        for name in locks:
            fd = _try_lock(_path(name))
            if fd is None:
                if os.path.lexists(_path(name)):
                    return []  # held by a living process (or unreadable): not stale
                continue  # vanished meanwhile (removed by its owner or by another cleaner)
            held.callback(os.close, fd)  # closing the descriptor drops the flock
            held_locks.append(name)
        if not held_locks:
            return []
        data = [base]
        if mutex is not None:
            data.append(f"sem.{mutex}")
        present = [n for n in data + held_locks if _is_regular(_path(n))]
        if not remove:
            return [_path(n) for n in present]
        removed = []
        # the data files first, the lock files last: a lock file is what tells a Fast DDS file from others
        for name in data + held_locks:
            p = _path(name)
            try:
                if not _is_regular(p):
                    continue
                os.unlink(p)
                removed.append(p)
            except FileNotFoundError:
                continue
            except OSError as e:
                if log is not None:
                    log(f"shm cleanup: cannot remove {p}: {e.strerror}")
                if name in data:
                    break  # keep the lock files so the leftovers stay recognisable
        if removed and log is not None:
            log(f"shm cleanup: removed stale Fast DDS {'port' if mutex else 'segment'} {base} "
                f"({', '.join(os.path.basename(p) for p in removed)})")
        return removed


def _is_regular(path: str) -> bool:
    try:
        return stat.S_ISREG(os.lstat(path).st_mode)
    except OSError:
        return False


def _try_lock(path: str) -> int | None:
    """An open descriptor on ``path`` holding an exclusive flock, or None when it is locked / gone / not usable.

    The file is opened read-only and never created; after locking, ``path`` must still name the locked inode
    (else it was removed and maybe recreated by a new owner: not ours).
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
    except OSError:
        return None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise OSError(errno.EINVAL, "not a regular file")
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        now = os.lstat(path)
        if (now.st_dev, now.st_ino) != (st.st_dev, st.st_ino):
            raise OSError(errno.ESTALE, "replaced")
        return fd
    except OSError:
        os.close(fd)
        return None


class _PortMutex:
    """The POSIX named semaphore ``/<prefix>_port<N>_mutex`` (boost named_mutex) Fast DDS guards a port with."""

    _libc = None

    def __init__(self, handle: int):
        self._handle = handle

    @classmethod
    def _lib(cls):
        if cls._libc is None:
            lib = ctypes.CDLL(None, use_errno=True)
            for fn in ("sem_open", "sem_trywait", "sem_post", "sem_close"):
                getattr(lib, fn)  # AttributeError if missing
            lib.sem_open.restype = ctypes.c_void_p
            lib.sem_trywait.argtypes = lib.sem_post.argtypes = lib.sem_close.argtypes = [ctypes.c_void_p]
            cls._libc = lib
        return cls._libc

    @classmethod
    def acquire(cls, name: str, create: bool) -> _PortMutex | None | bool:
        """The held mutex; None when it does not exist (and ``create`` is false); False when it cannot be taken.

        ``create``: open or create it (initial count 1, mode 0644) as Fast DDS does, so that a process that
        starts opening the port while it is being removed waits for it.
        """
        try:
            lib = cls._lib()
        except (OSError, AttributeError):
            return False
        cname = ("/" + name).encode()
        handle = lib.sem_open(ctypes.c_char_p(cname), ctypes.c_int(0))
        if not handle:
            err = ctypes.get_errno()
            if err != errno.ENOENT:
                return False
            if not create:
                return None
            handle = lib.sem_open(ctypes.c_char_p(cname), ctypes.c_int(os.O_CREAT), ctypes.c_uint(0o644),
                                  ctypes.c_uint(1))
            if not handle:
                return False
        if lib.sem_trywait(ctypes.c_void_p(handle)) != 0:
            lib.sem_close(ctypes.c_void_p(handle))
            return False
        return cls(handle)

    def release(self) -> None:
        lib = self._lib()
        lib.sem_post(ctypes.c_void_p(self._handle))
        lib.sem_close(ctypes.c_void_p(self._handle))


def main(argv: list[str] | None = None) -> int:
    import argparse

    ap = argparse.ArgumentParser(description="Remove Fast DDS shared-memory files of dead processes from /dev/shm")
    ap.add_argument("--dry-run", action="store_true", help="only list the stale files")
    args = ap.parse_args(argv)
    if args.dry_run:
        for p in stale_fastdds_segments():
            print(p)
    else:
        removed = remove_stale_fastdds_segments(log=print)
        print(f"{len(removed)} file(s) removed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
