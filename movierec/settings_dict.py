"""Settings dataclasses from plain dicts (JSON, TFX custom_config), unknown keys refused."""
from __future__ import annotations

import dataclasses
from typing import Any, Mapping


def from_dict(cls, values: Mapping[str, Any], what: str):
    """`cls(**values)`, validated by `cls` itself; a key `cls` does not have is a ValueError
    naming it and every known key (`what` names the settings in the message)."""
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ValueError(f"unknown {what} settings {unknown}; known: {sorted(known)}")
    return cls(**values)
