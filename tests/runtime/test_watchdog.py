"""The supervisor's stale-input detector (plain Python)."""
from __future__ import annotations

from jala_runtime.watchdog import Watchdog


def test_watchdog_detects_stale_inputs_and_respects_activation():
    wd = Watchdog(now=0.0)
    wd.add("camera", 0.25, now=0.0, grace=1.0)
    wd.add("policy", 1.0, active=False, now=0.0)
    assert wd.check(now=1.2) == []  # in the start-up grace
    faults = wd.check(now=1.3)
    assert [f.source for f in faults] == ["camera"] and "no message yet" in faults[0].reason
    wd.feed("camera", t=2.0)
    assert wd.check(now=2.2) == []
    faults = wd.check(now=2.3)
    assert faults and "300 ms ago" in faults[0].reason
    wd.feed("camera", t=5.0)
    wd.set_active("policy", True, now=5.0)
    assert wd.check(now=5.2) == [] and [f.source for f in wd.check(now=6.1)] == ["camera", "policy"]
    wd.set_active("camera", False)
    assert [f.source for f in wd.check(now=6.1)] == ["policy"]
    wd.set_active("camera", True, now=6.1, keep_last=True)  # stale while inactive: faults at once
    assert "camera" in [f.source for f in wd.check(now=6.1)]
