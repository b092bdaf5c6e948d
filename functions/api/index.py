"""One HTTP function for every operation: POST /<Operation> or ?Action=<Operation>."""

from __future__ import annotations

from openimm.platform.entry import http_router_handler

handler = http_router_handler()
