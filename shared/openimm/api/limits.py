"""How large a request's values may be: one place, so every check and the README agree.

Names, ids and URIs become keys of the table store and the blob store, so their limits
are those every backend can store: Tablestore primary-key strings up to 1 KB, DynamoDB
partition keys up to 2048 bytes and sort keys up to 1024, OSS object keys up to 1023
bytes, S3 keys up to 1024. Bytes are counted in UTF-8, as those stores count them.
A value past a limit is refused with 400 InvalidArgument naming the parameter, before
anything is read or written.
"""

from __future__ import annotations

# IMM's: ProjectName and DatasetName, 1 to 128 characters (letters, digits, - and _).
NAME_MAX_CHARS = 128

# A file's URI is the sort key of its row: the whole URI must fit 1024 bytes (which
# leaves the object key under OSS's 1023 and S3's 1024 as well).
URI_MAX_BYTES = 1024

# ObjectId, FigureId, FigureClusterId, TaskId, TaskType, From, Froms, To: keys of rows.
# Every id OpenIMM (and IMM) hands out is short printable ASCII; 128 of them keep a
# hundred ids (Froms) well inside one queue message even when JSON escapes them.
ID_MAX_CHARS = 128

# IMM's: UserData up to 2048 bytes; Description up to 256 characters.
USER_DATA_MAX_BYTES = 2048
DESCRIPTION_MAX_CHARS = 256

# Free text kept on a row or matched against one: CustomId, Title, a cluster's Name,
# MediaType, NextToken, filter expressions... Bounded so a row stays far below
# DynamoDB's 400 KB item limit whatever the client sends.
TEXT_MAX_BYTES = 1024

# CustomLabels and Tags: string maps stored on rows.
LABELS_MAX_ITEMS = 100
LABEL_KEY_MAX_BYTES = 128
LABEL_VALUE_MAX_BYTES = 1024

# Items of one batch: Files, ObjectIds, Froms, Sources (IMM's limit per request).
MAX_BATCH = 100

# A faces-searching task travels in one queue message (the Queue port's 64 KB, as MNS
# and SQS allow): its Sources' URIs, as JSON text, get half of that.
SOURCES_MAX_JSON_BYTES = 32 * 1024

# An MNS topic's name, as the Topic port checks it before publishing.
TOPIC_NAME_MAX_CHARS = 64
