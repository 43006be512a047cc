"""Store errors. Each protocol maps them to replies in exactly one place."""

from __future__ import annotations


class StoreError(Exception):
    """Base class for everything the store raises on purpose."""


class NotFound(StoreError):
    """The named domain, account, alias, mailbox, message or queue entry does not exist."""


class AlreadyExists(StoreError):
    """A domain, account, alias or mailbox of that name exists already."""


class InUse(StoreError):
    """The object is still referenced (a domain with accounts)."""


class InvalidName(StoreError):
    """A mailbox name the store refuses (empty component, control characters, too long)."""


class OverQuota(StoreError):
    """The account's storage or message quota would be exceeded."""


class StoreUnavailable(StoreError):
    """Disk full, I/O error or database failure: a temporary condition (SMTP 452 4.3.1)."""
