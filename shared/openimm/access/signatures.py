"""Alibaba Cloud's request signatures, checked: ACS3-HMAC-SHA256 and RPC signature v2.

ACS3 signs the method, path, sorted query, the headers it names and the body's SHA-256
(`Authorization: ACS3-HMAC-SHA256 Credential=<id>,SignedHeaders=<a;b>,Signature=<hex>`).
Signature v2 signs every parameter, query and form body alike, with HMAC-SHA1 of
`<secret>&`. Both carry a time and a nonce; the gate (access/gate.py) checks those.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone

from openimm.access.keyring import AccessKey
from openimm.errors import (
    IncompleteSignature,
    InvalidTimeStampFormat,
    MissingAccessKeyId,
    SignatureDoesNotMatch,
)

ACS3 = "ACS3-HMAC-SHA256"
_FORM = "application/x-www-form-urlencoded"
# what an ACS3 signature must cover for its time, nonce and body to be trusted
_MUST_SIGN = ("x-acs-content-sha256", "x-acs-date", "x-acs-signature-nonce")
_MISMATCH = (
    "The request signature does not match the one calculated with the AccessKey secret: "
    "check the secret, and that nothing changed the request after it was signed."
)


@dataclass(frozen=True)
class HttpRequest:
    """An HTTP request as its signature sees it; header names lowercase."""

    method: str
    path: str
    query: Mapping[str, str]
    headers: Mapping[str, str]
    body: bytes


@dataclass(frozen=True)
class Claim:
    """What a signed request says of itself, before its signature is checked."""

    key_id: str
    nonce: str
    signed_at: datetime
    verify: Callable[[AccessKey], None]


def claim_of(request: HttpRequest) -> Claim:
    """The key, time and nonce a request claims, and how to check its signature."""
    authorization = request.headers.get("authorization", "").strip()
    if authorization:
        return _acs3_claim(request, authorization)
    if "Signature" in request.query or "AccessKeyId" in request.query:
        return _v2_claim(request)
    raise MissingAccessKeyId(
        "The request is not signed: sign it with an AccessKey (ACS3-HMAC-SHA256 or "
        "signature v2), as Alibaba Cloud's SDKs do."
    )


# ---------------------------------------------------------------- ACS3


def _acs3_claim(request: HttpRequest, authorization: str) -> Claim:
    algorithm, _, rest = authorization.partition(" ")
    if algorithm != ACS3:
        raise IncompleteSignature(
            f"The signature algorithm {algorithm[:40]!r} is not supported; use {ACS3}."
        )
    fields = dict(part.strip().partition("=")[::2] for part in rest.split(","))
    key_id, signed, signature = (
        fields.get("Credential"),
        fields.get("SignedHeaders"),
        fields.get("Signature"),
    )
    if not key_id or not signed or not signature:
        raise IncompleteSignature(
            "The Authorization header needs Credential, SignedHeaders and Signature."
        )
    names = signed.split(";")
    unsigned = [name for name in _MUST_SIGN if name not in names]
    unsigned += [
        name for name in request.headers if name.startswith("x-acs-") and name not in names
    ]
    missing = [name for name in names if name not in request.headers]
    if unsigned or missing or names != sorted(names):
        problem = (
            f"the header {unsigned[0]} must be signed"
            if unsigned
            else f"the signed header {missing[0]} is absent"
            if missing
            else "SignedHeaders must be sorted"
        )
        raise IncompleteSignature(f"The ACS3 signature is incomplete: {problem}.")
    body_hash = hashlib.sha256(request.body).hexdigest()
    if request.headers["x-acs-content-sha256"].strip().lower() != body_hash:
        raise SignatureDoesNotMatch("x-acs-content-sha256 is not the SHA-256 of the body.")

    def verify(key: AccessKey) -> None:
        canonical = "\n".join(
            (
                request.method,
                request.path or "/",
                _canonical_query(request.query),
                "".join(f"{name}:{request.headers[name].strip()}\n" for name in names),
                signed,
                body_hash,
            )
        )
        to_sign = f"{ACS3}\n{hashlib.sha256(_bytes(canonical)).hexdigest()}"
        expected = hmac.new(_bytes(key.secret), _bytes(to_sign), hashlib.sha256).hexdigest()
        if not hmac.compare_digest(_bytes(expected), _bytes(signature.lower())):
            raise SignatureDoesNotMatch(_MISMATCH)

    return Claim(
        key_id,
        request.headers["x-acs-signature-nonce"].strip(),
        _signed_at(request.headers["x-acs-date"].strip(), "x-acs-date"),
        verify,
    )


def _canonical_query(query: Mapping[str, str]) -> str:
    return "&".join(f"{_encode(k)}={_encode(query[k])}" for k in sorted(query))


# ---------------------------------------------------------------- v2


def _v2_claim(request: HttpRequest) -> Claim:
    params = dict(request.query)
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type == _FORM and request.body:
        try:
            form = urllib.parse.parse_qsl(request.body.decode(), keep_blank_values=True)
        except UnicodeDecodeError:
            raise IncompleteSignature("The form body is not UTF-8 text.") from None
        params.update(form)
    signature = params.pop("Signature", "")
    needed = ("AccessKeyId", "SignatureMethod", "SignatureNonce", "Timestamp")
    absent = [name for name in needed if not params.get(name)]
    absent += [] if signature else ["Signature"]
    if absent:
        raise IncompleteSignature(f"The signed request lacks the parameter {absent[0]}.")
    if params["SignatureMethod"] != "HMAC-SHA1" or params.get("SignatureVersion", "1.0") != "1.0":
        raise IncompleteSignature("Signature v2 is HMAC-SHA1, SignatureVersion 1.0.")

    def verify(key: AccessKey) -> None:
        canonical = "&".join(f"{_encode(k)}={_encode(params[k])}" for k in sorted(params))
        to_sign = f"{request.method}&%2F&{_encode(canonical)}"
        digest = hmac.new(_bytes(f"{key.secret}&"), _bytes(to_sign), hashlib.sha1).digest()
        if not hmac.compare_digest(base64.b64encode(digest), _bytes(signature)):
            raise SignatureDoesNotMatch(_MISMATCH)

    return Claim(
        params["AccessKeyId"],
        params["SignatureNonce"],
        _signed_at(params["Timestamp"], "Timestamp"),
        verify,
    )


# ---------------------------------------------------------------- shared


def _bytes(text: str) -> bytes:
    # a lone surrogate (from a garbled header) must fail the comparison, not the server
    return text.encode("utf-8", "surrogatepass")


def _encode(text: str) -> str:
    return urllib.parse.quote(text, safe="~", encoding="utf-8", errors="surrogatepass")


def _signed_at(text: str, name: str) -> datetime:
    try:
        when = datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ")
    except ValueError:
        raise InvalidTimeStampFormat(
            f"{name} must be UTC in ISO 8601, like 2026-01-01T12:00:00Z."
        ) from None
    return when.replace(tzinfo=timezone.utc)
