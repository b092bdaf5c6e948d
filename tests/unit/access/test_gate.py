"""The access gate against requests signed by Alibaba Cloud's own signing code (tea-openapi)."""

from __future__ import annotations

import hashlib
import json
from datetime import datetime, timezone
from types import SimpleNamespace
from typing import Any

import pytest
from alibabacloud_tea_openapi.utils import Utils

from openimm.access.gate import PLATFORM, UNCHECKED, Access, AccessGate
from openimm.access.keyring import KeysFileError, Mode, keyring_from_env, parse_keyring
from openimm.access.signatures import HttpRequest
from openimm.errors import ImmError

NOW = datetime(2026, 12, 5, 12, 0, 0, tzinfo=timezone.utc).timestamp()
KEYS = {
    "AccessKeys": [
        {
            "AccessKeyId": "LTAI-album",
            "AccessKeySecret": "album-secret-1",
            "Projects": {"album-*": "write", "shared": "read"},
            "Buckets": {"photos": "read", "results": "write"},
        }
    ]
}


class Nonces:
    def __init__(self) -> None:
        self.seen: set[tuple[str, str]] = set()

    def first_use(self, key_id: str, nonce: str, keep_seconds: float) -> bool:
        if (key_id, nonce) in self.seen:
            return False
        self.seen.add((key_id, nonce))
        return True


def _gate(clock: float = NOW) -> AccessGate:
    return AccessGate(parse_keyring(json.dumps(KEYS), "test"), Nonces(), clock=lambda: clock)


def _stamp(at: float = NOW) -> str:
    return datetime.fromtimestamp(at, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def acs3(
    body: bytes = b"",
    *,
    key: str = "LTAI-album",
    secret: str = "album-secret-1",
    nonce: str = "n-1",
    at: float = NOW,
    query: dict[str, str] | None = None,
) -> HttpRequest:
    """A request signed as the SDK signs ACS3 (its own get_authorization)."""
    headers = {
        "host": "127.0.0.1:8080",
        "x-acs-action": "ListTasks",
        "x-acs-version": "2020-09-30",
        "x-acs-date": _stamp(at),
        "x-acs-signature-nonce": nonce,
        "x-acs-content-sha256": hashlib.sha256(body).hexdigest(),
        "accept": "application/json",
    }
    query = {"ProjectName": "album-1", "MaxResults": "10"} if query is None else query
    signing = SimpleNamespace(pathname="/", query=query, headers=headers, method="POST")
    headers["authorization"] = Utils.get_authorization(
        signing, "ACS3-HMAC-SHA256", hashlib.sha256(body).hexdigest(), key, secret
    )
    return HttpRequest("POST", "/", query, headers, body)


def v2(*, secret: str = "album-secret-1", nonce: str = "n-2", at: float = NOW) -> HttpRequest:
    """A request signed as the SDK signs signature v2 (its own get_rpcsignature)."""
    query = {
        "Action": "ListTasks",
        "Format": "json",
        "Version": "2020-09-30",
        "Timestamp": _stamp(at),
        "SignatureNonce": nonce,
        "SignatureMethod": "HMAC-SHA1",
        "SignatureVersion": "1.0",
        "AccessKeyId": "LTAI-album",
        "ProjectName": "album-1",
        "Tags": '{"a": "b c"}',
    }
    query["Signature"] = Utils.get_rpcsignature(dict(query), "POST", secret)
    return HttpRequest("POST", "/", query, {"host": "127.0.0.1:8080"}, b"")


def code_of(gate: AccessGate, request: HttpRequest) -> str:
    with pytest.raises(ImmError) as refused:
        gate.admit(request)
    return f"{refused.value.http_status} {refused.value.code}"


def test_both_signature_versions_admit_the_key() -> None:
    gate = _gate()
    assert gate.admit(acs3()).key_id == "LTAI-album"
    assert gate.admit(v2()).key_id == "LTAI-album"


def test_a_form_body_is_signed_too() -> None:
    gate = _gate()
    assert gate.admit(acs3(b"ProjectName=album-1", query={})).key_id == "LTAI-album"


def test_refusals_carry_alibaba_clouds_codes() -> None:
    gate = _gate()
    unsigned = HttpRequest("POST", "/", {"Action": "ListTasks"}, {}, b"")
    assert code_of(gate, unsigned) == "400 MissingAccessKeyId"
    assert code_of(gate, acs3(key="LTAI-other")) == "404 InvalidAccessKeyId.NotFound"
    assert code_of(gate, acs3(secret="wrong-secret")) == "400 SignatureDoesNotMatch"
    assert code_of(gate, v2(secret="wrong-secret")) == "400 SignatureDoesNotMatch"
    assert code_of(gate, acs3(at=NOW - 16 * 60)) == "400 InvalidTimeStamp.Expired"
    assert code_of(gate, v2(at=NOW + 16 * 60)) == "400 InvalidTimeStamp.Expired"


def test_a_replayed_request_is_refused_but_a_failed_one_spends_no_nonce() -> None:
    gate = _gate()
    assert code_of(gate, acs3(secret="wrong-secret", nonce="n-9")) == "400 SignatureDoesNotMatch"
    gate.admit(acs3(nonce="n-9"))
    assert code_of(gate, acs3(nonce="n-9")) == "400 SignatureNonceUsed"
    assert code_of(gate, v2(nonce="n-9")) == "400 SignatureNonceUsed"


def test_tampering_after_signing_is_caught() -> None:
    gate = _gate()
    signed = acs3(b"ProjectName=album-1", query={})
    changed = HttpRequest("POST", "/", {}, signed.headers, b"ProjectName=album-2")
    assert code_of(gate, changed) == "400 SignatureDoesNotMatch"
    signed = acs3()
    moved = HttpRequest("POST", "/", {**signed.query, "ProjectName": "shared"}, signed.headers, b"")
    assert code_of(gate, moved) == "400 SignatureDoesNotMatch"
    unsigned_header = {**signed.headers, "x-acs-extra": "1"}
    assert code_of(gate, HttpRequest("POST", "/", signed.query, unsigned_header, b"")) == (
        "400 IncompleteSignature"
    )


@pytest.mark.parametrize(
    "authorization",
    [
        "ACS3-HMAC-SM3 Credential=LTAI-album,SignedHeaders=host,Signature=00",
        "ACS3-HMAC-SHA256 Credential=LTAI-album",
        "ACS3-HMAC-SHA256 garbage",
        "Bearer token",
    ],
)
def test_malformed_authorization_is_incomplete(authorization: str) -> None:
    signed = acs3()
    headers = {**signed.headers, "authorization": authorization}
    assert code_of(_gate(), HttpRequest("POST", "/", signed.query, headers, b"")) == (
        "400 IncompleteSignature"
    )


def test_grants_cover_projects_and_buckets_by_pattern_and_mode() -> None:
    caller = _gate().admit(acs3())
    caller.check([Access("project", "album-7", Mode.WRITE), Access("bucket", "photos", Mode.READ)])
    caller.check([Access("project", "shared", Mode.READ), Access("bucket", "results", Mode.WRITE)])
    for denied in (
        Access("project", "shared", Mode.WRITE),
        Access("project", "other", Mode.READ),
        Access("bucket", "photos", Mode.WRITE),
        Access("bucket", "secrets", Mode.READ),
    ):
        with pytest.raises(ImmError) as refused:
            caller.check([denied])
        assert refused.value.http_status == 403 and refused.value.code == "Forbidden.RAM"
        assert denied.name in refused.value.message


def test_without_keys_or_without_http_nothing_is_checked() -> None:
    assert AccessGate(None, Nonces()).admit(HttpRequest("POST", "/", {}, {}, b"")) is UNCHECKED
    assert _gate().admit(None) is PLATFORM


def test_keys_file_errors_name_the_place_never_the_secret(tmp_path: Any) -> None:
    bad = {"AccessKeys": [{**KEYS["AccessKeys"][0], "Projects": {"a": "admin"}}]}
    with pytest.raises(KeysFileError) as error:
        parse_keyring(json.dumps(bad), "keys.json")
    assert "Projects" in str(error.value) and "album-secret-1" not in str(error.value)
    twice = {"AccessKeys": KEYS["AccessKeys"] * 2}
    with pytest.raises(KeysFileError, match="more than once"):
        parse_keyring(json.dumps(twice), "keys.json")
    with pytest.raises(KeysFileError, match="cannot read"):
        keyring_from_env({"OPENIMM_ACCESS_KEYS_FILE": str(tmp_path / "absent.json")})
    path = tmp_path / "keys.json"
    path.write_text(json.dumps(KEYS))
    keyring = keyring_from_env({"OPENIMM_ACCESS_KEYS_FILE": str(path)})
    assert keyring is not None and len(keyring) == 1
    assert "album-secret-1" not in repr(keyring.get("LTAI-album"))
    assert keyring_from_env({}) is None


def test_a_cloud_endpoint_without_keys_answers_no_http_request() -> None:
    from openimm.bootstrap import Settings

    assert Settings.from_env({}).trust_unsigned_http
    for runtime in ({"FC_FUNCTION_NAME": "openimm-api"}, {"AWS_LAMBDA_FUNCTION_NAME": "Api"}):
        settings = Settings.from_env(runtime)
        assert not settings.trust_unsigned_http
        gate = AccessGate(None, Nonces(), trust_unsigned=settings.trust_unsigned_http)
        assert code_of(gate, HttpRequest("POST", "/", {}, {}, b"")) == "403 Forbidden.RAM"
        assert gate.admit(None) is PLATFORM  # a direct invocation, authorised by the cloud
        trusting = {**runtime, "OPENIMM_TRUST_UNSIGNED_HTTP": "1"}
        assert Settings.from_env(trusting).trust_unsigned_http


def test_garbled_signatures_are_refused_with_4xx_only() -> None:
    """Every byte-level corruption of a signed request's header or query is a 4xx refusal."""
    import random

    rng = random.Random(13)
    gate = _gate()
    pool = "=,; \t\x00\ud800é%&+/ACS3-HMAC-SHA256Credential"
    for trial in range(400):
        signed = acs3(nonce=f"f-{trial}") if trial % 2 else v2(nonce=f"f-{trial}")
        headers, query = dict(signed.headers), dict(signed.query)
        target = headers if trial % 2 else query
        name = rng.choice(sorted(target))
        text = list(target[name])
        for _ in range(rng.randint(1, 4)):
            at = rng.randrange(len(text) + 1)
            text[at:at + rng.randint(0, 3)] = rng.choice(pool)
        target[name] = "".join(text)
        try:
            gate.admit(HttpRequest("POST", "/", query, headers, b""))
        except ImmError as refused:
            assert 400 <= refused.http_status < 500, refused
