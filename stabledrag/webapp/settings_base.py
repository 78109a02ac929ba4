"""What both tabs' settings dataclasses share: their field names in UI order, and the step from raw
UI values (any extra keys, a method's menu label) to constructor arguments."""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar


#: The menu label of the "baseline" method on both tabs: nearest-neighbour tracking and plain
#: supervision (DragGAN's / DragDiffusion's algorithm) on *our* tuned settings, which is not
#: DragGAN or DragDiffusion as published (those are the "reference settings" entries).
BASELINE_LABEL = "Baseline (nearest-neighbour tracking, our settings)"


class TabSettings:
    """Mixin for a settings dataclass; subclasses set `METHOD_LABELS` (menu label -> method key)
    and `OLD_METHOD_LABELS` (labels of earlier versions, still read from sessions and the API)."""

    METHOD_LABELS: ClassVar[dict[str, str]] = {}
    OLD_METHOD_LABELS: ClassVar[dict[str, str]] = {}
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
        """The entries of `values` that are fields, with a method label (current or old) mapped to its key."""
        known = {k: v for k, v in values.items() if k in cls.names()}
        labels = {**cls.OLD_METHOD_LABELS, **cls.METHOD_LABELS}
        if isinstance(known.get("method"), str) and known["method"] in labels:
            known["method"] = labels[known["method"]]
        return known

    @classmethod
    def method_label(cls, key: str) -> str:
        """The menu label of a method key (the key itself when it has none)."""
        return next((label for label, k in cls.METHOD_LABELS.items() if k == key), key)
