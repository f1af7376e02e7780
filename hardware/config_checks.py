"""Helpers for validating device config dataclasses: collect every problem, then raise one error naming them all."""
from __future__ import annotations

import math
from typing import Any


class ConfigProblems(list):
    """The problems found in one config (strings)."""

    def need(self, ok: bool, message: str) -> None:
        if not ok:
            self.append(message)

    def raise_if_any(self, error: type[Exception], what: str) -> None:
        if self:
            raise error(f"invalid {what}: " + "; ".join(self))


def is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value: Any) -> bool:
    """A finite int or float (bools are not numbers here)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
