"""The gate every HTTP request passes: a valid signature of a known key, then its grants."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Protocol

from openimm.access.keyring import EVERYTHING, Grants, Keyring, Mode
from openimm.access.sessions import SESSION_HEADER, cookie_of, session_key
from openimm.access.signatures import HttpRequest, claim_of
from openimm.errors import (
    Forbidden,
    IncompleteSignature,
    InvalidAccessKeyIdNotFound,
    InvalidTimeStampExpired,
    SessionExpired,
    SignatureNonceUsed,
)

# Alibaba Cloud accepts a signature for 15 minutes either side of its own clock.
WINDOW_SECONDS = 15 * 60
MAX_NONCE_CHARS = 128
# what a browser may send by itself (an <img>): reads only
SAFE_METHODS = frozenset({"GET", "HEAD"})


class NonceBook(Protocol):
    """Remembers nonces long enough that a replay inside the window is seen."""

    def first_use(self, key_id: str, nonce: str, keep_seconds: float) -> bool:
        """Record the nonce; False when it was recorded before (a replay)."""
        ...


@dataclass(frozen=True)
class Access:
    """One project or bucket a request touches, and how."""

    kind: str  # "project" or "bucket"
    name: str
    mode: Mode


@dataclass(frozen=True)
class Caller:
    """Who sent a request: a key id (or who let it in) and what it may touch."""

    key_id: str
    grants: Grants

    def check(self, accesses: Iterable[Access]) -> None:
        """Raise Forbidden for the first access its grants do not cover."""
        for access in accesses:
            allowed = (
                self.grants.allows_project(access.name, access.mode)
                if access.kind == "project"
                else self.grants.allows_bucket(access.name, access.mode)
            )
            if not allowed:
                verb = "write" if access.mode is Mode.WRITE else "read"
                raise Forbidden(
                    f"The AccessKey {self.key_id} may not {verb} the {access.kind} "
                    f"{access.name!r}."
                )


# A deployment without keys trusts whoever reaches it (loopback, or a private network);
# a direct invocation was already authorised by the platform's own IAM.
UNCHECKED = Caller("unchecked", EVERYTHING)
PLATFORM = Caller("platform", EVERYTHING)


class AccessGate:
    """Admits HTTP requests signed by a configured key, within the time window, once."""

    def __init__(
        self,
        keyring: Keyring | None,
        nonces: NonceBook,
        *,
        trust_unsigned: bool = True,
        clock: Callable[[], float] = time.time,
        window_seconds: float = WINDOW_SECONDS,
    ) -> None:
        self._keyring = keyring
        self._trust_unsigned = trust_unsigned
        self._nonces = nonces
        self._clock = clock
        self._window = window_seconds

    @property
    def checks_signatures(self) -> bool:
        """Whether access keys are configured."""
        return self._keyring is not None

    def admit(self, request: HttpRequest | None) -> Caller:
        """The caller of a request, or the IMM error that refuses it."""
        if request is None:
            return PLATFORM
        if self._keyring is None:
            if not self._trust_unsigned:
                raise Forbidden(
                    "This endpoint has no access keys configured, so it answers no HTTP "
                    "request: set OPENIMM_ACCESS_KEYS (or OPENIMM_ACCESS_KEYS_FILE)."
                )
            return UNCHECKED
        session = self._session_caller(request)
        if session is not None:
            return session
        claim = claim_of(request)
        key = self._keyring.get(claim.key_id)
        if key is None:
            raise InvalidAccessKeyIdNotFound(
                f"The AccessKey ID {claim.key_id[:128]!r} is not configured here."
            )
        now = self._clock()
        skew = claim.signed_at.timestamp() - now
        if abs(skew) > self._window:
            clock = datetime.fromtimestamp(now, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
            raise InvalidTimeStampExpired(
                f"The request was signed at {claim.signed_at:%Y-%m-%dT%H:%M:%SZ}, more than "
                f"{self._window // 60:.0f} minutes from this server's clock ({clock})."
            )
        if not claim.nonce or len(claim.nonce) > MAX_NONCE_CHARS:
            raise IncompleteSignature(
                f"The signature nonce must have 1 to {MAX_NONCE_CHARS} characters."
            )
        claim.verify(key)
        # Only after the signature holds, so nobody can spend another caller's nonces.
        if not self._nonces.first_use(key.key_id, claim.nonce, 2 * self._window):
            raise SignatureNonceUsed("The signature nonce was used already: this is a replay.")
        return Caller(key.key_id, key.grants)

    def _session_caller(self, request: HttpRequest) -> Caller | None:
        """The caller of an unsigned request carrying a valid session cookie (sessions.py);
        a signed request is judged by its signature alone."""
        assert self._keyring is not None
        signed = "authorization" in request.headers or "Signature" in request.query
        value = None if signed else cookie_of(request.headers)
        if value is None:
            return None
        key = session_key(self._keyring, value, self._clock)
        if key is None:
            raise SessionExpired(
                "The session has expired or its access key changed: log in again."
            )
        if request.method not in SAFE_METHODS and SESSION_HEADER not in request.headers:
            raise Forbidden(
                f"A session's request that changes something must carry {SESSION_HEADER}."
            )
        return Caller(key.key_id, key.grants)
