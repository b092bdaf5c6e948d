"""Faults of a function's instance, as the platform emulators of the end-to-end tests meet them."""

from __future__ import annotations


class InstanceCrash(BaseException):
    """The function's instance died mid-invocation (out of memory, timeout): no reply at all.

    A BaseException, so that nothing in the handler catches it, as nothing can catch the
    death of its process.
    """
