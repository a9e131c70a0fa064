"""The real-node world's settings live in localcluster/realnode-world.env; Molecule cannot read
that file, so molecule/realnode/molecule.yml carries a copy, which must not drift."""

from __future__ import annotations

from pathlib import Path

import yaml

from tests.realnode.conftest import world_defaults

REPO = Path(__file__).resolve().parents[2]


def test_the_molecule_scenario_uses_the_same_world_as_the_tests() -> None:
    scenario = yaml.safe_load((REPO / "molecule" / "realnode" / "molecule.yml").read_text())
    env = (
        scenario["provisioner"]["env"] if "provisioner" in scenario else scenario["ansible"]["env"]
    )
    copied = {k: v for k, v in env.items() if k.startswith("URM_LOCALCLUSTER_")}
    defaults = world_defaults()
    assert copied == defaults
    assert defaults["URM_LOCALCLUSTER_REAL_NODE"] == "1"
    assert defaults["URM_LOCALCLUSTER_APISERVER_PORT"] != "16443", "never the default world's"
