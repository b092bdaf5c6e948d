"""Gallery sessions: a cookie one key grants, checked by the same gate as signatures."""

from __future__ import annotations

import json

import pytest

from openimm.access.gate import AccessGate
from openimm.access.keyring import Keyring, Mode, parse_keyring
from openimm.access.sessions import (
    COOKIE,
    SESSION_HEADER,
    cookie_of,
    log_in,
    session_cookie,
    set_cookie_header,
)
from openimm.access.signatures import HttpRequest
from openimm.errors import ImmError

NOW = 1_800_000_000.0
KEYS = {
    "AccessKeys": [
        {
            "AccessKeyId": "LTAI.album",
            "AccessKeySecret": "album-secret-1",
            "Projects": {"album": "write"},
            "Buckets": {"photos": "read"},
        }
    ]
}


class _NoNonces:
    def first_use(self, key_id: str, nonce: str, keep_seconds: float) -> bool:
        raise AssertionError("a session spends no nonce")


def _keys(secret: str = "album-secret-1") -> Keyring:
    keys = json.loads(json.dumps(KEYS))
    keys["AccessKeys"][0]["AccessKeySecret"] = secret
    return parse_keyring(json.dumps(keys), "test")


def _request(cookie: str, method: str = "POST", **headers: str) -> HttpRequest:
    return HttpRequest(method, "/GetTask", {}, {"cookie": f"{COOKIE}={cookie}", **headers}, b"")


def _gate(secret: str = "album-secret-1", at: float = NOW) -> AccessGate:
    return AccessGate(_keys(secret), _NoNonces(), clock=lambda: at)


def _cookie() -> str:
    keyring = _keys()
    return session_cookie(log_in(keyring, "LTAI.album", "album-secret-1"), NOW)


def test_a_cookie_admits_its_key_with_its_grants() -> None:
    caller = _gate().admit(_request(_cookie(), **{SESSION_HEADER: "1"}))
    assert caller.key_id == "LTAI.album"
    assert caller.grants.allows_project("album", Mode.WRITE)
    assert not caller.grants.allows_bucket("other", Mode.READ)


def test_a_read_needs_no_header_a_change_does() -> None:
    assert _gate().admit(_request(_cookie(), method="GET")).key_id == "LTAI.album"
    with pytest.raises(ImmError) as caught:
        _gate().admit(_request(_cookie()))
    assert caught.value.code == "Forbidden.RAM" and SESSION_HEADER in caught.value.message


@pytest.mark.parametrize(
    ("cookie", "gate"),
    [
        ("forged", _gate()),
        ("LTAI.album.1.deadbeef", _gate()),
        (_cookie(), _gate(at=NOW + 9 * 3600)),  # expired
        (_cookie(), _gate(secret="a-rotated-secret")),  # the key's secret changed
    ],
)
def test_a_bad_cookie_is_refused(cookie: str, gate: AccessGate) -> None:
    with pytest.raises(ImmError) as caught:
        gate.admit(_request(cookie, **{SESSION_HEADER: "1"}))
    assert caught.value.code == "InvalidSecurityToken.Expired"


def test_log_in_refuses_a_wrong_secret_or_key() -> None:
    keyring = _keys()
    with pytest.raises(ImmError) as caught:
        log_in(keyring, "LTAI.album", "not-the-secret")
    assert caught.value.code == "SignatureDoesNotMatch"
    with pytest.raises(ImmError) as caught:
        log_in(keyring, "LTAI-nobody", "album-secret-1")
    assert caught.value.code == "InvalidAccessKeyId.NotFound"


def test_the_cookie_is_http_only_strict_and_never_holds_the_secret() -> None:
    header = set_cookie_header(_cookie())
    assert "HttpOnly" in header and "SameSite=Strict" in header
    assert "album-secret-1" not in header
    assert cookie_of({"cookie": f"a=b; {COOKIE}=v.1.x"}) == "v.1.x"
    assert cookie_of({"cookie": "a=b"}) is None
