"""NextToken: opaque to callers, checked when it comes back."""

from __future__ import annotations

import base64
import json

import pytest

from openimm.api import requests as rq
from openimm.api.operations import _page
from openimm.errors import InvalidArgument


def _tasks(**fields: object) -> rq.ListTasksRequest:
    return rq.ListTasksRequest.model_validate({"ProjectName": "p", "MaxResults": 2, **fields})


def test_tokens_page_through_the_whole_list() -> None:
    items, seen, token = list(range(5)), [], None
    while True:
        page, token = _page(items, _tasks(NextToken=token))
        seen += page
        if token is None:
            break
    assert seen == items


def test_a_token_from_another_listing_is_refused() -> None:
    _, token = _page(list(range(5)), _tasks(Order="asc"))
    with pytest.raises(InvalidArgument, match="another listing"):
        _page(list(range(5)), _tasks(Order="desc", NextToken=token))
    with pytest.raises(InvalidArgument, match="another listing"):
        _page(list(range(5)), _tasks(ProjectName="other", NextToken=token))


def _forged(fields: object) -> str:
    return base64.urlsafe_b64encode(json.dumps(fields).encode()).decode()


@pytest.mark.parametrize(
    "token",
    [
        _forged({"o": True, "s": "x"}),
        _forged({"o": 1}),
        _forged({"o": -1, "s": "x"}),
        _forged({"o": 1.0, "s": "x"}),
        _forged({"o": 1, "s": "x", "more": 1}),
        _forged([1, 2]),
        "not base64 !",
        base64.urlsafe_b64encode(b"\xff\xfe").decode(),
    ],
)
def test_a_forged_token_is_refused(token: str) -> None:
    with pytest.raises(InvalidArgument, match="NextToken is invalid"):
        _page(list(range(5)), _tasks(NextToken=token))
