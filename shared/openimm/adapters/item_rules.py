"""What a write makes of an item, and key-range helpers: the same for every TableStore."""

from __future__ import annotations

from openimm.ports import JSON, ConditionFailed, Increment, Put, Record, Write


def apply_write(write: Write, current: Record | None, now: float) -> Record | None:
    """The item after `write` (None: deleted), given the live item; raises ConditionFailed."""
    where = f"{write.table}/{write.pk}/{write.sk}"
    if isinstance(write, Put):
        if write.if_absent and current is not None:
            raise ConditionFailed(f"{where} already exists")
        if write.if_version is not None and (
            current is None or current.version != write.if_version
        ):
            found = "absent" if current is None else f"at version {current.version}"
            raise ConditionFailed(f"{where} is {found}, not at version {write.if_version}")
        expires = None if write.ttl_seconds is None else now + write.ttl_seconds
        version = 1 if current is None else current.version + 1
        return Record(write.pk, write.sk, dict(write.data), version, expires)
    if isinstance(write, Increment):
        data: JSON = {} if current is None else dict(current.data)
        for name, delta in write.deltas.items():
            value = data.get(name, 0)
            if not is_number(value) or not is_number(delta):
                raise ValueError(f"{where}: {name!r} is not a number")
            data[name] = value + delta
        if current is None:
            return Record(write.pk, write.sk, data, 1, None)
        return Record(write.pk, write.sk, data, current.version + 1, current.expires_at)
    if write.if_version is not None and (current is None or current.version != write.if_version):
        raise ConditionFailed(f"{where} is not at version {write.if_version}")
    return None


def live(record: Record | None, now: float) -> Record | None:
    """The record, or None when absent or expired at `now`."""
    if record is None or (record.expires_at is not None and record.expires_at <= now):
        return None
    return record


def is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def prefix_end(prefix: str) -> str | None:
    """The smallest string above every string starting with `prefix` (None: no bound)."""
    # SQLite's BINARY collation and Tablestore both compare UTF-8 bytes, which orders
    # like code points.
    chars = prefix.rstrip("\U0010ffff")
    if not chars:
        return None
    nxt = ord(chars[-1]) + 1
    if 0xD800 <= nxt <= 0xDFFF:
        # Surrogates cannot be stored as UTF-8; the next storable character is U+E000.
        nxt = 0xE000
    return chars[:-1] + chr(nxt)
