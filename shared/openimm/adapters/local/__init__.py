"""Adapters for one machine: SQLite tables and queue, folders as buckets, a JSONL topic."""

from __future__ import annotations

from openimm.adapters.local.folder_blobs import FolderBlobStore
from openimm.adapters.local.jsonl_topic import JsonlTopic
from openimm.adapters.local.sqlite_queue import SqliteQueue
from openimm.adapters.local.sqlite_table import SqliteTableStore

__all__ = ["FolderBlobStore", "JsonlTopic", "SqliteQueue", "SqliteTableStore"]
