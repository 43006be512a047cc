"""What the mailbox commands share: hierarchy arithmetic on names, object ids, and the one
place where store errors become IMAP responses.

Theory of operation
-------------------
Mailbox names reach the handlers already decoded (modified UTF-7 or UTF-8), free of control
characters and with ``INBOX`` spelled canonically (see :mod:`mailpost.imap.mailboxargs`).
The store is the judge of what a valid name is (empty levels, ``.`` and ``..`` levels,
length); the handlers only reason about the hierarchy: which names are *superiors* of
``a/b/c`` (``a`` and ``a/b``, RFC 9051 §6.3.4) and which are *inferiors* of ``a``.

Store errors map to response codes in :func:`store_failure`, and nowhere else (RFC 5530):
``NotFound`` is ``NO [NONEXISTENT]``, ``AlreadyExists`` is ``NO [ALREADYEXISTS]``,
``InvalidName`` is ``NO [CANNOT]``, ``OverQuota`` is ``NO [OVERQUOTA]`` (RFC 9208 §4.3.1)
and ``StoreUnavailable`` is ``NO [UNAVAILABLE]``. The text never repeats the client's name.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable, Iterator
from typing import TYPE_CHECKING

from mailpost.imap import commands as cmd
from mailpost.imap.responses import Response, Tagged
from mailpost.store.errors import (
    AlreadyExists,
    InvalidName,
    NotFound,
    OverQuota,
    StoreError,
    StoreUnavailable,
)
from mailpost.store.types import HIERARCHY_DELIMITER

if TYPE_CHECKING:
    from mailpost.imap.session import IMAPSession

DELIMITER = HIERARCHY_DELIMITER
INBOX = "INBOX"

_FAILURES: tuple[tuple[type[StoreError], str, str], ...] = (
    (NotFound, "NONEXISTENT", "No such mailbox"),
    (AlreadyExists, "ALREADYEXISTS", "Mailbox already exists"),
    (InvalidName, "CANNOT", "Invalid mailbox name"),
    (OverQuota, "OVERQUOTA", "Quota exceeded"),
    (StoreUnavailable, "UNAVAILABLE", "Mail store temporarily unavailable"),
)


def store_failure(tag: str, error: StoreError) -> Tagged:
    """The tagged NO for a store error (RFC 5530 response codes)."""
    for kind, code, text in _FAILURES:
        if isinstance(error, kind):
            return Tagged(tag, "NO", text, code)
    return Tagged(tag, "NO", "Mail store temporarily unavailable", "UNAVAILABLE")


MailboxHandler = Callable[["IMAPSession", cmd.Command], Awaitable[Response]]


def answers_store_errors(handler: MailboxHandler) -> MailboxHandler:
    """Turn a store error escaping ``handler`` into the command's tagged NO."""

    @functools.wraps(handler)
    async def wrapper(session: IMAPSession, command: cmd.Command) -> Response:
        try:
            return await handler(session, command)
        except StoreError as error:
            return store_failure(command.tag, error)

    return wrapper


def account_id(session: IMAPSession) -> int:
    """The logged-in account (the dispatcher only runs these commands after login)."""
    assert session.account is not None
    return session.account.id


def superiors(name: str) -> Iterator[str]:
    """The superior names of ``name``, nearest first: ``a/b/c`` gives ``a/b`` then ``a``."""
    end = name.rfind(DELIMITER)
    while end > 0:
        yield name[:end]
        end = name.rfind(DELIMITER, 0, end)


def is_inferior(name: str, ancestor: str) -> bool:
    """True if ``name`` is below ``ancestor`` in the hierarchy (not ``ancestor`` itself)."""
    return name.startswith(ancestor + DELIMITER)


def strip_trailing_delimiter(name: str) -> str:
    """RFC 9051 §6.3.4: ``CREATE foo/`` declares intent and creates ``foo``."""
    return name.removesuffix(DELIMITER)


def mailbox_object_id(mailbox_id: int) -> str:
    """The RFC 8474 MAILBOXID of a mailbox: stable across RENAME, and never reused because
    the store never reuses mailbox ids. ``F`` (for folder) keeps it apart from EMAILIDs."""
    return f"F{mailbox_id}"
