"""Browser sessions: a cookie one access key grants, so the gallery page needs no signing.

A browser cannot sign an `<img>` request, and a page signing in JavaScript would keep the
secret in the page. Instead the page trades the key id and secret once (`POST /session`)
for a cookie `<key id>.<expiry>.<HMAC-SHA256 of both under the key's secret>`:

- stateless: every `serve` process holds the keyring, so any of them checks any cookie;
- revoked with the key: changing or removing the secret voids its cookies at once;
- HttpOnly (no script reads it) and SameSite=Strict (no other site's page sends it); a
  cookie request that changes something must also carry SESSION_HEADER, which a form of
  another site cannot add, so cross-site request forgery needs both to fail.

The cookie is a bearer token, like the secret it stands for: a serve reached over a
network belongs behind TLS either way.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Callable, Mapping
from http.cookies import CookieError, SimpleCookie

from openimm.access.keyring import AccessKey, Keyring
from openimm.errors import InvalidAccessKeyIdNotFound, SignatureDoesNotMatch

COOKIE = "openimm_session"
# the page's requests carry it; a cross-site form cannot (it is not a simple header)
SESSION_HEADER = "x-openimm-session"
LIFETIME_SECONDS = 8 * 3600
_PURPOSE = b"openimm-session\n"


def session_cookie(key: AccessKey, now: float, lifetime: float = LIFETIME_SECONDS) -> str:
    """The cookie's value for `key`, valid `lifetime` seconds from `now`."""
    expiry = str(int(now + lifetime))
    return f"{key.key_id}.{expiry}.{_mac(key, expiry)}"


def set_cookie_header(value: str, lifetime: float = LIFETIME_SECONDS) -> str:
    """The Set-Cookie header that gives the browser `value` (empty value: forget it)."""
    age = int(lifetime) if value else 0
    return f"{COOKIE}={value}; Path=/; Max-Age={age}; HttpOnly; SameSite=Strict"


def log_in(keyring: Keyring, key_id: str, secret: str) -> AccessKey:
    """The key whose id and secret these are, or the IMM error a wrong one gets."""
    key = keyring.get(key_id)
    if key is None:
        raise InvalidAccessKeyIdNotFound(f"The AccessKey ID {key_id[:128]!r} is not configured.")
    if not hmac.compare_digest(key.secret.encode(), secret.encode()):
        raise SignatureDoesNotMatch("The AccessKey secret is not the one configured.")
    return key


def cookie_of(headers: Mapping[str, str]) -> str | None:
    """The session cookie's value in a request's (lowercase-named) headers."""
    raw = headers.get("cookie")
    if not raw:
        return None
    try:
        jar = SimpleCookie(raw)
    except CookieError:
        return None
    morsel = jar.get(COOKIE)
    return morsel.value if morsel is not None and morsel.value else None


def session_key(
    keyring: Keyring, value: str, clock: Callable[[], float] = time.time
) -> AccessKey | None:
    """The key a cookie value stands for; None when forged, expired or its key changed."""
    # a key id may hold dots; the expiry and the MAC never do
    parts = value.rsplit(".", 2)
    if len(parts) != 3 or not parts[1].isdigit():
        return None
    key_id, expiry, mac = parts
    key = keyring.get(key_id)
    if key is None or int(expiry) < clock():
        return None
    if not hmac.compare_digest(_mac(key, expiry).encode(), mac.encode()):
        return None
    return key


def _mac(key: AccessKey, expiry: str) -> str:
    message = _PURPOSE + key.key_id.encode() + b"\n" + expiry.encode()
    return hmac.new(key.secret.encode(), message, hashlib.sha256).hexdigest()
