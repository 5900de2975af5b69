"""The store's error and warning types (kept apart so every store module can raise them)."""

from __future__ import annotations


class StoreError(ValueError):
    """Bad input to the results store or nothing to read: one sentence naming the path or key."""


class StoreWarning(UserWarning):
    """A results file was skipped (unreadable, truncated, wrong types): the message names it."""


class Vanished(Exception):
    """A listed file was deleted before it was read (a compaction finished meanwhile): the
    reader lists again, a compaction gives way to the other one."""
