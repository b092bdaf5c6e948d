"""Gives up on stage messages: the stages' dead-letter queues (MNS via EventBridge, SQS)."""

from __future__ import annotations

from openimm.platform.entry import dead_letter_handler

handler = dead_letter_handler()
