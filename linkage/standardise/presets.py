"""Presets: named sets of field declarations shipped as data (``linkage/presets/<name>.yaml``).

``preset: justice`` in a config adds the justice preset's ``fields:`` to the job's own, as if
written there; a job may declare a preset field again only exactly as the preset does.
"""

from __future__ import annotations

import functools
from importlib import resources
from typing import Any

import yaml

PRESETS = ("justice",)


@functools.cache
def _load(name: str) -> dict[str, Any]:
    text = resources.files("linkage").joinpath(f"presets/{name}.yaml").read_text(encoding="utf-8")
    return yaml.safe_load(text)["fields"]


def preset_field_specs(name: str) -> dict[str, Any]:
    """The preset's field declarations, as written (a fresh copy)."""
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r} (presets: {', '.join(PRESETS)})")
    import copy

    return copy.deepcopy(_load(name))


@functools.cache
def preset_fields(name: str) -> dict[str, Any]:
    """The preset's fields, validated: field name -> its ``FieldType``."""
    from pydantic import TypeAdapter

    from linkage.standardise.types import AnyFieldType

    adapter = TypeAdapter(AnyFieldType)
    return {f: adapter.validate_python(spec) for f, spec in preset_field_specs(name).items()}
