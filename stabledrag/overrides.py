"""`--set KEY=VALUE` settings from the command line (shared by the CLI and the engines' options)."""

from __future__ import annotations

import json
from typing import Any, Sequence

from .errors import UserError


def parse_overrides(items: Sequence[str]) -> dict[str, Any]:
    """`["tau=0.5", "r_p=4"]` -> `{"tau": 0.5, "r_p": 4}` (values parsed as JSON when possible, else
    kept as strings). Raises UserError for an item without `=`."""
    out: dict[str, Any] = {}
    for item in items or ():
        if "=" not in item:
            raise UserError(f"--set needs KEY=VALUE, got {item!r}")
        key, value = item.split("=", 1)
        try:
            out[key.strip()] = json.loads(value)
        except json.JSONDecodeError:
            out[key.strip()] = value
    return out
