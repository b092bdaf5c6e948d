"""Recorded-shape platform events under tests/events, loaded as the runtime hands them over."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

EVENTS_DIR = Path(__file__).parent / "events"


def event_names() -> list[str]:
    """The names of all recorded events."""
    return sorted(path.stem for path in EVENTS_DIR.glob("*.json"))


def load_event(name: str) -> Any:
    """A recorded event: bytes for FC (`fc_*`, as its Python runtime passes them), else parsed."""
    raw = (EVENTS_DIR / f"{name}.json").read_bytes()
    # FC 3.0 built-in runtimes pass every event as JSON bytes; Lambda parses it first.
    return raw if name.startswith("fc_") else json.loads(raw)


def load_json(name: str) -> Any:
    """A recorded event parsed to Python data, whatever its platform (to edit before use)."""
    return json.loads((EVENTS_DIR / f"{name}.json").read_bytes())
