"""The embed stage, fed by FC async invocation, MNS via EventBridge or SQS."""

from __future__ import annotations

from openimm.platform.entry import stage_handler

handler = stage_handler("embed")
