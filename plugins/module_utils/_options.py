# Copyright: URM training maintainers
# SPDX-License-Identifier: Apache-2.0
"""Normalising module options that every module shares the shape of."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def string_map(option: str, value: Any, error: type[Exception]) -> dict[str, str]:
    """A mapping option (labels, env, build args) as str -> str.

    Empty gives {}; anything but a mapping, or a key without a value, raises ``error`` naming
    the option and the key, so each module reports it with its own error type.
    """
    if value in (None, ""):
        return {}
    if not isinstance(value, Mapping):
        raise error(f"{option} must be a mapping of names to values")
    result: dict[str, str] = {}
    for key, val in value.items():
        if val is None:
            raise error(f"{option}.{key} has no value: give a string")
        result[str(key)] = str(val)
    return result
