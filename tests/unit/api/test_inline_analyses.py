"""The slots of the inline image analyses: refused at once when full, given back always."""

from __future__ import annotations

import pytest

from openimm.api.inline_analyses import InlineAnalyses
from openimm.errors import Throttling


def test_beyond_the_limit_a_request_is_refused_busy() -> None:
    slots = InlineAnalyses(2)
    with (
        slots.slot("DetectImageFaces"),
        slots.slot("CompareImageFaces"),
        pytest.raises(Throttling) as refused,
        slots.slot("SearchImageFigureCluster"),
    ):
        pytest.fail("a third analysis must not run")
    assert (refused.value.code, refused.value.http_status) == ("Throttling", 503)
    assert refused.value.message.startswith("SearchImageFigureCluster was not run")
    assert "2 images at once" in refused.value.message
    with slots.slot("DetectImageFaces"), slots.slot("DetectImageFaces"):
        pass  # both slots came back


def test_a_failed_analysis_gives_its_slot_back() -> None:
    slots = InlineAnalyses(1)
    with pytest.raises(RuntimeError), slots.slot("DetectImageFaces"):
        raise RuntimeError("the image could not be read")
    with slots.slot("DetectImageFaces"):
        pass


def test_at_least_one_slot() -> None:
    with pytest.raises(ValueError, match="at least one"):
        InlineAnalyses(0)
