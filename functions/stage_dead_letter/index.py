"""Gives up on stage messages that reached a dead-letter queue: files failed, tasks ended."""

from __future__ import annotations

from openimm.platform.entry import dead_letter_handler

handler = dead_letter_handler()
