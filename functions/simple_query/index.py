"""The SimpleQuery function (HTTP trigger or direct invocation)."""

from __future__ import annotations

from openimm.platform.entry import operation_handler

handler = operation_handler("SimpleQuery")
