"""TableStore on one DynamoDB table holding every logical table.

One physical table rather than one per logical table: the template creates (and sets
TTL on) a single resource, and a transaction may write items of several logical tables
of one partition. Its key is `pk` = "<table>#<pk>" and `sk`, both strings; each data
attribute is stored as a top-level attribute "d:<name>", so that an increment can ADD
to it on the server and return the new item (ALL_NEW) from the same call. `expires_at`
(epoch seconds) is the table's TTL attribute: DynamoDB deletes expired items up to days
late, so the port filters them on read and writes here treat them as absent.

Puts and deletes read the items first (one TransactGetItems), check the port's
conditions on what they read, then write with TransactWriteItems guarded by the
versions read; when another writer came in between, they read again.
"""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

from boto3.dynamodb.types import TypeDeserializer, TypeSerializer
from botocore.exceptions import ClientError

from openimm.adapters.aws.errors import aws_errors, error_code
from openimm.adapters.item_rules import apply_write, is_number, live
from openimm.ports import (
    JSON,
    Increment,
    PortError,
    Record,
    TableStore,
    Write,
)

_DATA = "d:"
_ATTEMPTS = 20
_BATCH_GET = 100

_SERIALIZER = TypeSerializer()
_DESERIALIZER = TypeDeserializer()

Item = dict[str, Any]


class DynamoTableStore(TableStore):
    """Items of every logical table in one DynamoDB table (pk, sk strings; TTL expires_at)."""

    def __init__(self, client: Any, table_name: str) -> None:
        self._client = client
        self._name = table_name

    def _get(self, table: str, pk: str, sk: str) -> Record | None:
        with aws_errors(f"get from {self._name}"):
            got = self._client.get_item(
                TableName=self._name, Key=_key(table, pk, sk), ConsistentRead=True
            )
        item = got.get("Item")
        return None if item is None else _record(item)

    def _batch_get(self, table: str, keys: list[tuple[str, str]]) -> list[Record]:
        unique = list(dict.fromkeys(keys))
        found: list[Record] = []
        for start in range(0, len(unique), _BATCH_GET):
            wanted = [_key(table, pk, sk) for pk, sk in unique[start : start + _BATCH_GET]]
            request: dict[str, Any] = {
                self._name: {"Keys": wanted, "ConsistentRead": True}
            }
            # DynamoDB may leave keys unprocessed under load: ask again for those.
            while request:
                with aws_errors(f"batch get from {self._name}"):
                    got = self._client.batch_get_item(RequestItems=request)
                found += [_record(item) for item in got["Responses"].get(self._name, [])]
                request = got.get("UnprocessedKeys") or {}
        return found

    def _query(
        self,
        table: str,
        pk: str,
        sk_prefix: str,
        start_after: str | None,
        limit: int,
        descending: bool,
    ) -> list[Record]:
        args: dict[str, Any] = {
            "TableName": self._name,
            "ConsistentRead": True,
            "ScanIndexForward": not descending,
            "ExpressionAttributeValues": {":pk": {"S": _partition(table, pk)}},
            "KeyConditionExpression": "pk = :pk",
        }
        if sk_prefix:
            args["KeyConditionExpression"] += " AND begins_with(sk, :prefix)"
            args["ExpressionAttributeValues"][":prefix"] = {"S": sk_prefix}
        if start_after is not None:
            args["ExclusiveStartKey"] = _key(table, pk, start_after)
        records: list[Record] = []
        while len(records) < limit:
            with aws_errors(f"query {self._name}"):
                got = self._client.query(Limit=limit - len(records), **args)
            records += [_record(item) for item in got.get("Items", [])]
            if "LastEvaluatedKey" not in got:
                break
            args["ExclusiveStartKey"] = got["LastEvaluatedKey"]
        return records

    def _transact(self, writes: list[Write], now: float) -> None:
        for _ in range(_ATTEMPTS):
            current = self._read_for_write(writes)
            operations = [_operation(self._name, w, current[i], now) for i, w in enumerate(writes)]
            try:
                self._client.transact_write_items(TransactItems=operations)
                return
            except ClientError as exc:
                if not _raced(exc):
                    with aws_errors(f"write to {self._name}"):
                        raise
                # An item changed since it was read: read again and decide again.
        raise PortError(f"{self._name}: too many concurrent writers, gave up")

    def _read_for_write(self, writes: list[Write]) -> list[Item | None]:
        gets = [
            {"Get": {"TableName": self._name, "Key": _key(w.table, w.pk, w.sk)}} for w in writes
        ]
        with aws_errors(f"read {self._name}"):
            got = self._client.transact_get_items(TransactItems=gets)
        return [response.get("Item") for response in got["Responses"]]

    def _increment(self, write: Increment, now: float) -> Record:
        for name, delta in write.deltas.items():
            if not is_number(delta):
                raise ValueError(f"{write.table}/{write.pk}/{write.sk}: {name!r} is not a number")
        names = {f"#a{i}": _DATA + name for i, name in enumerate(write.deltas)}
        values: dict[str, Any] = {
            f":a{i}": {"N": str(delta)} for i, delta in enumerate(write.deltas.values())
        }
        adds = ", ".join(f"#a{i} :a{i}" for i in range(len(write.deltas)))
        for _ in range(_ATTEMPTS):
            try:
                got = self._client.update_item(
                    TableName=self._name,
                    Key=_key(write.table, write.pk, write.sk),
                    UpdateExpression=f"ADD version :one, {adds}",
                    ConditionExpression=_LIVE_OR_ABSENT,
                    ExpressionAttributeNames=names,
                    ExpressionAttributeValues={**values, ":one": {"N": "1"}, ":now": _number(now)},
                    ReturnValues="ALL_NEW",
                )
                return _record(got["Attributes"])
            except ClientError as exc:
                code = error_code(exc)
                if code == "ValidationException" and "data type" in str(exc):
                    raise ValueError(f"{write.table}/{write.pk}/{write.sk}: {exc}") from exc
                if code != "ConditionalCheckFailedException":
                    with aws_errors(f"increment in {self._name}"):
                        raise
            # The item expired: it counts as absent, so the count starts again from zero.
            self._drop_expired(write, now)
        raise PortError(f"{self._name}: too many concurrent writers, gave up")

    def _drop_expired(self, write: Write, now: float) -> None:
        try:
            self._client.delete_item(
                TableName=self._name,
                Key=_key(write.table, write.pk, write.sk),
                ConditionExpression="expires_at <= :now",
                ExpressionAttributeValues={":now": _number(now)},
            )
        except ClientError as exc:
            if error_code(exc) != "ConditionalCheckFailedException":
                with aws_errors(f"delete from {self._name}"):
                    raise


def _raced(exc: ClientError) -> bool:
    """The transaction failed only because another writer changed an item meanwhile."""
    if error_code(exc) == "TransactionConflictException":
        return True
    if error_code(exc) != "TransactionCanceledException":
        return False
    reasons = exc.response.get("CancellationReasons") or []
    codes = {str(r.get("Code", "None")) for r in reasons}
    return bool(codes & _RACES) and codes <= _RACES | {"None"}


_RACES = {"ConditionalCheckFailed", "TransactionConflict"}
_LIVE_OR_ABSENT = (
    "attribute_not_exists(pk) OR attribute_not_exists(expires_at) OR expires_at > :now"
)


def _operation(name: str, write: Write, item: Item | None, now: float) -> JSON:
    """One TransactWriteItems entry: the port's conditions checked on `item`, as read."""
    current = None if item is None else _record(item)
    new = apply_write(write, live(current, now), now)
    if new is None:
        key = _key(write.table, write.pk, write.sk)
        return {"Delete": {"TableName": name, "Key": key, **_unchanged(item)}}
    return {"Put": {"TableName": name, "Item": _item(write.table, new), **_unchanged(item)}}


def _unchanged(item: Item | None) -> JSON:
    """A condition that holds while the stored item is still the one read."""
    if item is None:
        return {"ConditionExpression": "attribute_not_exists(pk)"}
    return {
        "ConditionExpression": "version = :read",
        "ExpressionAttributeValues": {":read": item["version"]},
    }


def _partition(table: str, pk: str) -> str:
    return f"{table}#{pk}"


def _key(table: str, pk: str, sk: str) -> Item:
    return {"pk": {"S": _partition(table, pk)}, "sk": {"S": sk}}


def _number(value: float) -> JSON:
    return {"N": repr(value) if isinstance(value, float) else str(value)}


def _item(table: str, record: Record) -> Item:
    item = _key(table, record.pk, record.sk)
    item["version"] = {"N": str(record.version)}
    if record.expires_at is not None:
        item["expires_at"] = _number(record.expires_at)
    # Through JSON text so that floats become Decimals, the only numbers DynamoDB takes.
    exact = json.loads(json.dumps(record.data), parse_float=Decimal)
    for name, value in exact.items():
        item[_DATA + name] = _SERIALIZER.serialize(value)
    return item


def _record(item: Item) -> Record:
    data = {
        name[len(_DATA) :]: _plain(_DESERIALIZER.deserialize(value))
        for name, value in item.items()
        if name.startswith(_DATA)
    }
    partition = item["pk"]["S"]
    expires = item.get("expires_at")
    return Record(
        partition.split("#", 1)[1],
        item["sk"]["S"],
        data,
        int(item["version"]["N"]),
        None if expires is None else float(expires["N"]),
    )


def _plain(value: Any) -> Any:
    """DynamoDB's Decimals back to the ints and floats JSON had."""
    if isinstance(value, Decimal):
        whole = value == value.to_integral_value() and int(value.as_tuple().exponent) >= 0
        return int(value) if whole else float(value)
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value
