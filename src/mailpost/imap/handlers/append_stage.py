"""The messages of one APPEND command while they arrive, before anything is committed.

Theory of operation
-------------------
An APPEND command (RFC 9051 §6.3.12, with MULTIAPPEND, RFC 3502) delivers its messages one
after the other, each announced by an ``AppendMessage`` event and then streamed as
``AppendData`` chunks. An :class:`AppendStage` collects them: every message gets its own
:class:`~mailpost.store.interface.BlobWriter` (which keeps small bodies in memory and spills
larger ones to a temporary file, so memory stays bounded whatever the size), and the writer is
finished - the body made durable - when the next message or the end of the command arrives.
Nothing becomes visible in a mailbox here; :mod:`.append_commit` does that once the whole
command has arrived, so MULTIAPPEND stays all-or-nothing.

A stage can be *refused* (:meth:`AppendStage.refuse`) after some octets were accepted: a
non-synchronising literal whose target does not exist or would break the quota is drained
rather than rejected (the client sends it anyway, RFC 7888 §4, and draining keeps the
connection), a body write fails, or an 8-bit header arrives from a client that did not enable
UTF-8 (RFC 6855 §4). From then on the octets are dropped, every writer is aborted, and the
command will end with the first refusal's ``NO``.

Abandoned stages (the command was cut short by a ``BadCommand`` or the connection closed,
events this module is not told about) are aborted when the next APPEND starts or, at the
latest, when the session object goes away (a ``weakref.finalize`` safety net), so their
temporary files do not outlive the session.
"""

from __future__ import annotations

import logging
import weakref
from dataclasses import dataclass
from datetime import datetime

from mailpost.imap.handlers.append_headers import HeaderScanner
from mailpost.imap.responses import Tagged
from mailpost.store.errors import StoreError
from mailpost.store.interface import BlobWriter
from mailpost.store.types import Account, BlobRef, MailboxInfo

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why an APPEND (or COPY/MOVE) fails: the text and response code of its tagged ``NO``."""

    text: str
    code: str | None = None

    def response(self, tag: str) -> Tagged:
        return Tagged(tag, "NO", self.text, self.code)


UNAVAILABLE = Refusal("Cannot store the message now; try again later", "UNAVAILABLE")
EIGHT_BIT_HEADER = Refusal("8-bit header fields need ENABLE UTF8=ACCEPT (RFC 6855 section 4)")


@dataclass(slots=True)
class StagedMessage:
    """One message of the command: its options, its body writer and, once finished, its body."""

    writer: BlobWriter
    flags: frozenset[str]
    internal_date: datetime
    size: int
    scanner: HeaderScanner | None = None
    blob: BlobRef | None = None


class AppendStage:
    """Everything one APPEND command has staged so far (see the module docstring)."""

    def __init__(self, tag: str, account: Account, mailbox: MailboxInfo | None,
                 check_headers: bool) -> None:
        self.tag = tag
        self.account = account
        # None when the target does not exist: the command is then refused from the start.
        self.mailbox = mailbox
        self.check_headers = check_headers
        self.messages: list[StagedMessage] = []
        self.refusal: Refusal | None = None
        self._current: StagedMessage | None = None
        self._finalizer: weakref.finalize[[list[StagedMessage]], object] | None = None

    # -- bookkeeping --------------------------------------------------------------------------

    def guard(self, owner: object) -> None:
        """Abort this stage if ``owner`` (the session) is collected while it is still open."""
        # The list object itself, not a copy: messages staged later are aborted too.
        self._finalizer = weakref.finalize(owner, _abort_writers, self.messages)

    @property
    def staged_bytes(self) -> int:
        """Octets announced for the messages accepted so far (the quota counts them)."""
        return sum(message.size for message in self.messages)

    @property
    def staged_count(self) -> int:
        return len(self.messages)

    # -- receiving ----------------------------------------------------------------------------

    def begin(self, message: StagedMessage) -> None:
        """Start receiving ``message`` (its literal was accepted)."""
        self.messages.append(message)
        self._current = message

    def drain(self) -> None:
        """Accept the octets of a message that will not be stored (the stage is refused)."""
        self._current = None

    def write(self, data: bytes) -> None:
        message = self._current
        if message is None or self.refusal is not None:
            return  # draining: the command already failed
        if message.scanner is not None:
            message.scanner.feed(data)
            if message.scanner.eight_bit:
                self.refuse(EIGHT_BIT_HEADER)  # the rest of the message is drained
                return
        try:
            message.writer.write(data)
        except StoreError as exc:
            log.warning("APPEND body write failed: %s", exc)
            self.refuse(UNAVAILABLE)

    async def finish_current(self) -> None:
        """The current message is complete: make its body durable (or refuse the stage)."""
        message, self._current = self._current, None
        if message is None or self.refusal is not None:
            return
        try:
            message.blob = await message.writer.finish()
        except StoreError as exc:
            log.warning("APPEND body could not be made durable: %s", exc)
            self.refuse(UNAVAILABLE)

    # -- failing ------------------------------------------------------------------------------

    def refuse(self, refusal: Refusal) -> None:
        """Fail the command (the first reason wins) and drop every body staged so far."""
        if self.refusal is None:
            self.refusal = refusal
        self.abort()

    def abort(self) -> None:
        """Abort every writer; finished bodies are released by :func:`.append_commit.discard`
        (a finished file body that is never released is removed by the start-up sweep)."""
        _abort_writers(self.messages)

    def close(self) -> None:
        """The stage is over (committed or discarded): the safety net is no longer needed."""
        if self._finalizer is not None:
            self._finalizer.detach()
            self._finalizer = None


def _abort_writers(messages: list[StagedMessage]) -> None:
    """Abort the writers of ``messages``.

    ``BlobWriter.abort`` is idempotent, never raises for a writer that finished (a durable
    body may be referenced) and drops a finished in-memory body that nothing stored yet.
    """
    for message in messages:
        message.writer.abort()
