"""string_map: the one normaliser of mapping options, raising each module's own error type."""

from __future__ import annotations

from typing import Any

import pytest

from ansible_collections.urm.training.plugins.module_utils._kaniko import ContextError
from ansible_collections.urm.training.plugins.module_utils._options import string_map
from ansible_collections.urm.training.plugins.module_utils._registry_secret import InputError
from ansible_collections.urm.training.plugins.module_utils._training import SpecError, build_spec


@pytest.mark.parametrize(
    ("value", "expected"), [(None, {}), ("", {}), ({1: 2, "a": True}, {"1": "2", "a": "True"})]
)
def test_values_become_strings(value: Any, expected: dict[str, str]) -> None:
    assert string_map("labels", value, InputError) == expected


@pytest.mark.parametrize("error", [ContextError, InputError, SpecError])
def test_a_key_without_a_value_is_named_in_the_modules_error(error: type[Exception]) -> None:
    with pytest.raises(error, match=r"^build_args\.CUDA has no value: give a string$"):
        string_map("build_args", {"CUDA": None}, error)
    with pytest.raises(error, match=r"^build_args must be a mapping of names to values$"):
        string_map("build_args", ["CUDA=12.4"], error)


def test_training_env_with_an_empty_value_is_refused_instead_of_becoming_none() -> None:
    with pytest.raises(SpecError, match=r"env\.HYDRA_FULL_ERROR has no value"):
        build_spec(
            {
                "name": "r",
                "namespace": "aic",
                "image": "registry.example/urm:1",
                "command": ["python"],
                "gpus": 1,
                "env": {"HYDRA_FULL_ERROR": None},
            }
        )
