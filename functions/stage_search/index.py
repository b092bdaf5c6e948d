"""The search stage (FacesSearching tasks), fed by FC async invocation, MNS or SQS."""

from __future__ import annotations

from openimm.platform.entry import stage_handler

handler = stage_handler("search")
