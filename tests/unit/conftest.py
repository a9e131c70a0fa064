"""Unit-test fixtures (no cluster, loopback only)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.unit.fakeserver import make_pki


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return make_pki(tmp_path_factory.mktemp("pki"))
