# Copyright: URM training maintainers
# SPDX-License-Identifier: Apache-2.0
"""Kubernetes resource quantities: parse, compare and print them, with errors that teach."""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation

_BINARY = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60}
_DECIMAL = {
    "n": Decimal("1e-9"),
    "u": Decimal("1e-6"),
    "m": Decimal("1e-3"),
    "": Decimal(1),
    "k": Decimal(10**3),
    "M": Decimal(10**6),
    "G": Decimal(10**9),
    "T": Decimal(10**12),
    "P": Decimal(10**15),
    "E": Decimal(10**18),
}
_QUANTITY_RE = re.compile(r"^([+-]?[0-9.]+(?:[eE][+-]?[0-9]+)?)([a-zA-Z]*)$")


class QuantityError(ValueError):
    pass


def parse_quantity(value: object, field: str) -> Decimal:
    """'16Gi' -> 17179869184, '500m' -> 0.5; a clear error for things like '16GB'."""
    text = str(value).strip()
    match = _QUANTITY_RE.match(text)
    if match:
        number, suffix = match.groups()
        try:
            base = Decimal(number)
        except InvalidOperation:
            base = None
        if base is not None:
            if suffix in _BINARY:
                return base * _BINARY[suffix]
            if suffix in _DECIMAL:
                return base * _DECIMAL[suffix]
    hint = ""
    upper = text.upper()
    if upper.endswith("B") and len(text) > 2 and text[-2] in "KMGTPE":
        hint = f"; did you mean {text[:-1]}i (binary) or {text[:-1]} (decimal)?"
    elif upper.endswith("IB"):
        hint = f"; did you mean {text[:-1]}?"
    raise QuantityError(
        f"{field}={text!r} is not a Kubernetes quantity (like 16Gi, 500Mi, 4 or 500m){hint}"
    )


def format_bytes(value: Decimal) -> str:
    """The shortest exact binary form: 68719476736 -> '64Gi'."""
    number = int(value)
    for suffix in ("Ei", "Pi", "Ti", "Gi", "Mi", "Ki"):
        unit = _BINARY[suffix]
        if number and number % unit == 0:
            return f"{number // unit}{suffix}"
    return str(number)


def format_number(value: Decimal) -> str:
    if value == value.to_integral_value():
        return str(int(value))
    return f"{int(value * 1000)}m"
