"""Child processes that end with the process that started them."""
from __future__ import annotations

import os
import signal


def die_with_parent(parent_pid: int, sig: int = signal.SIGTERM) -> None:
    """For ``subprocess.Popen(preexec_fn=functools.partial(die_with_parent, os.getpid()))``: in the child, before
    exec, ask the kernel to send it ``sig`` when the parent's thread that started it dies (Linux
    PR_SET_PDEATHSIG), however the parent ends (an exception, SIGKILL, a CI timeout). Start such children from a
    thread that lives as long as they should."""
    import ctypes

    pr_set_pdeathsig = 1
    ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, int(sig), 0, 0, 0)
    if os.getppid() != parent_pid:  # the parent died before prctl took effect
        os._exit(1)
