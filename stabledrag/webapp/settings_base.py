"""What both tabs' settings dataclasses share: their field names in UI order, and the step from raw
UI values (any extra keys, a method's menu label) to constructor arguments."""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar


class TabSettings:
    """Mixin for a settings dataclass; subclasses set `METHOD_LABELS` (menu label -> method key)."""

    METHOD_LABELS: ClassVar[dict[str, str]] = {}
    #: field -> (low, high, integer, label): the allowed range of each numeric setting.
    BOUNDS: ClassVar[dict[str, tuple[float, float, bool, str]]] = {}

    def check_numbers(self) -> None:
        """Replace each numeric field named in `BOUNDS` by its checked value (finite, within the
        range, whole where `integer`); UserError naming the setting otherwise (NaN, inf, text,
        2**63 seeds, r_p = 1e6 ...). A None value (automatic) is left as it is."""
        from ..limits import finite_number

        for name, (low, high, integer, label) in self.BOUNDS.items():
            value = getattr(self, name)
            if value is None:
                continue
            setattr(self, name, finite_number(value, label, low=low, high=high, integer=integer))

    @classmethod
    def names(cls) -> list[str]:
        """Field names in the order the UI lists them."""
        return [f.name for f in dataclasses.fields(cls)]

    @classmethod
    def known_values(cls, values: dict[str, Any]) -> dict[str, Any]:
        """The entries of `values` that are fields, with a method label mapped to its key."""
        known = {k: v for k, v in values.items() if k in cls.names()}
        if known.get("method") in cls.METHOD_LABELS:
            known["method"] = cls.METHOD_LABELS[known["method"]]
        return known
