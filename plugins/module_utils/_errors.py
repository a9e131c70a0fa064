# Copyright: URM training maintainers
# SPDX-License-Identifier: Apache-2.0
"""The failure a module reports with fail_json: a message, and what is known so far."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


class ModuleFailure(Exception):
    """A failure with a message fit for fail_json; ``result`` holds what is known so far."""

    def __init__(self, message: str, result: Mapping[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.result = dict(result or {})

    def __str__(self) -> str:
        return self.message
