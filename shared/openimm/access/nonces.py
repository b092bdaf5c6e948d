"""Nonces kept in the table store, so every instance of a deployment sees every replay."""

from __future__ import annotations

import hashlib

from openimm.ports import ConditionFailed, TableStore

NONCES = "nonces"


class TableNonces:
    """A NonceBook on the table store: a conditional put per nonce, expiring by itself."""

    def __init__(self, table: TableStore) -> None:
        self._table = table

    def first_use(self, key_id: str, nonce: str, keep_seconds: float) -> bool:
        """Record the nonce; False when it was recorded before."""
        # Hashed: the key limit of every store holds, and one partition per nonce spreads
        # the writes (a key id as partition would be one hot partition).
        text = f"{key_id}\n{nonce}".encode("utf-8", "surrogatepass")
        digest = hashlib.sha256(text).hexdigest()
        try:
            self._table.put(NONCES, digest, "-", {}, if_absent=True, ttl_seconds=keep_seconds)
        except ConditionFailed:
            return False
        return True
