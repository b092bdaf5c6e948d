"""Settings read from the environment: the backend and the deliveries before giving up."""

from __future__ import annotations

import pytest

from openimm.bootstrap import Settings


def test_the_local_backend_is_the_default() -> None:
    settings = Settings.from_env({})
    assert settings.backend == "local" and settings.max_deliveries == 5


@pytest.mark.parametrize("value", ["AWS", " aws "])
def test_backend_names_are_read_loosely(value: str) -> None:
    assert Settings.from_env({"OPENIMM_BACKEND": value}).backend == "aws"


def test_an_unknown_backend_is_refused_by_name() -> None:
    with pytest.raises(ValueError, match="OPENIMM_BACKEND must be one of local, aliyun, aws"):
        Settings.from_env({"OPENIMM_BACKEND": "gcp"})


@pytest.mark.parametrize("value", ["0", "-1", "five", "2.5", ""])
def test_deliveries_must_be_a_positive_whole_number(value: str) -> None:
    with pytest.raises(ValueError, match="OPENIMM_MAX_DELIVERIES"):
        Settings.from_env({"OPENIMM_MAX_DELIVERIES": value})


def test_inline_analyses_default_to_two_and_can_be_set() -> None:
    assert Settings.from_env({}).max_inline_analyses == 2
    assert Settings.from_env({"OPENIMM_MAX_INLINE_ANALYSES": "5"}).max_inline_analyses == 5
    with pytest.raises(ValueError, match="OPENIMM_MAX_INLINE_ANALYSES"):
        Settings.from_env({"OPENIMM_MAX_INLINE_ANALYSES": "0"})
