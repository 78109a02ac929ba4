"""Settings dataclasses <-> plain dicts, written once for the config classes (`DragConfig`,
`ProjectionConfig`, `GeneratorConfig`): a mixin that gives a dataclass `to_dict()` (JSON reports,
checkpoints, npz metadata) and `from_dict(data)` (its inverse, refusing keys that are not fields).
Standard library only, so the core can use it."""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping, TypeVar

T = TypeVar("T", bound="DictSettings")


class DictSettings:
    """Mixin for a dataclass of settings. A subclass sets `settings_name` (a plural noun phrase such
    as "drag settings") for the error message of `from_dict`."""

    settings_name = "settings"

    def to_dict(self) -> dict[str, Any]:
        """Plain dict of every field (`dataclasses.asdict`: nested dataclasses become dicts, values
        are deep copies) for JSON, checkpoints and npz metadata."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls: type[T], data: Mapping[str, Any]) -> T:
        """Inverse of `to_dict`: `cls(**data)`. Raises ValueError ("unknown <settings_name>: [keys]")
        for keys that are not fields of the class; the class's own checks (`__post_init__`) apply."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - names
        if unknown:
            raise ValueError(f"unknown {cls.settings_name}: {sorted(unknown)}")
        return cls(**data)
