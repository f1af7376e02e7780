"""A virtual serial cable: two pseudo-terminals whose traffic is copied both ways (what ``socat pty pty`` does).

Used to run the Modbus RTU emulator and driver against each other without hardware. POSIX only.
"""
from __future__ import annotations

import os
import select
import threading
import tty


class VirtualSerialPair:
    """Open two ptys and pump bytes between them in a thread.

    ``port_a`` and ``port_b`` are device paths (``/dev/pts/N``) that pyserial can open; what is written to one
    is read from the other. We keep the slave ends open ourselves so a peer closing and reopening its end does
    not tear the cable down.
    """

    def __init__(self) -> None:
        if os.name != "posix":
            raise OSError("VirtualSerialPair needs POSIX pseudo-terminals")
        self._master_a, self._slave_a = os.openpty()
        self._master_b, self._slave_b = os.openpty()
        for fd in (self._slave_a, self._slave_b):
            tty.setraw(fd)  # no echo, no line editing: a byte in is a byte out
        self.port_a = os.ttyname(self._slave_a)
        self.port_b = os.ttyname(self._slave_b)
        self._wake_r, self._wake_w = os.pipe()
        self._thread: threading.Thread | None = None
        self._closed = False

    def start(self) -> VirtualSerialPair:
        """Start pumping (once: a second call, e.g. ``with VirtualSerialPair().start()``, is a no-op)."""
        if self._thread is not None:
            return self
        self._thread = threading.Thread(target=self._pump, name="virtual-serial", daemon=True)
        self._thread.start()
        return self

    def _pump(self) -> None:
        peer = {self._master_a: self._master_b, self._master_b: self._master_a}
        while True:
            readable, _, _ = select.select([self._master_a, self._master_b, self._wake_r], [], [])
            if self._wake_r in readable:
                return
            for fd in readable:
                try:
                    data = os.read(fd, 4096)
                except OSError:
                    continue
                if data:
                    os.write(peer[fd], data)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        os.write(self._wake_w, b"x")
        if self._thread is not None:
            self._thread.join(timeout=2.0)
        for fd in (self._master_a, self._master_b, self._slave_a, self._slave_b, self._wake_r, self._wake_w):
            try:
                os.close(fd)
            except OSError:
                pass

    def __enter__(self) -> VirtualSerialPair:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()
