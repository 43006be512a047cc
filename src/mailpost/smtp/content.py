"""Readers for message content: the DATA phase and BDAT chunks.

Theory of operation
-------------------
While the protocol machine is in its DATA or BDAT state it hands the receive
buffer to one of these readers. Each :meth:`read` consumes what it can from
the front of the buffer and returns a :class:`ContentStep`: the content to
hand out as a ``DataChunk`` (possibly empty), and, once the content is
complete, the event that ends it together with what that end does to the
transaction.

* :class:`DataReader` (RFC 5321 §4.1.1.4): dot-decoding via
  :class:`~mailpost.smtp.framing.DotDecoder`; the end is ``EndOfData``, or
  ``Invalid`` 550 (smuggling) / 552 (size), both of which end the transaction
  at once (the session sees ``in_transaction`` False while handling them).
* :class:`BdatReader` (RFC 3030 §2): one per transaction, since the chunks
  of a message share its size count, its header scan and a CR that may be
  split from its LF by a chunk boundary. A non-LAST chunk ends with
  ``BdatChunkEnd``; the LAST chunk with ``EndOfData``. Too much content ends
  the chunk with 552: after a LAST chunk the transaction is over, otherwise it
  is failed until RSET.
* :class:`ChunkSkipper`: a BDAT that cannot be accepted (no MAIL, no RCPT,
  a failed transaction) still has its octets read and dropped before the
  refusal is sent (RFC 3030 §2: "MUST accept and discard the associated
  message data"); otherwise they would be parsed as commands.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from mailpost.smtp import replies
from mailpost.smtp.events import BdatChunkEnd, EndOfData, Event, Invalid
from mailpost.smtp.framing import CrlfNormaliser, DotDecoder, MessageBody
from mailpost.smtp.replies import Reply


class Effect(enum.Enum):
    """What a rejection by the machine at the end of some content does to the transaction.

    (``EndOfData`` and ``BdatChunkEnd`` have no effect here: the reply moves the state.)
    """

    NONE = enum.auto()
    END_TRANSACTION = enum.auto()  # the message is rejected as a whole
    FAIL_TRANSACTION = enum.auto()  # a rejected BDAT chunk: RSET required (RFC 3030 §2)


@dataclass(frozen=True, slots=True)
class ContentStep:
    data: bytes
    end: Event | None = None
    effect: Effect = Effect.NONE


class DataReader:
    """Content after a 354 reply to DATA, up to ``<CRLF>.<CRLF>``."""

    __slots__ = ("_body", "_decoder")

    def __init__(self, max_size: int) -> None:
        self._decoder = DotDecoder()
        self._body = MessageBody(max_size)

    def read(self, buf: bytearray) -> ContentStep:
        result = self._decoder.decode(buf)
        del buf[: result.consumed]
        data = self._body.accept(result.output)
        if not result.ended:
            return ContentStep(data)
        if self._decoder.smuggling:
            return ContentStep(data, Invalid(replies.SMUGGLING_REJECTED), Effect.END_TRANSACTION)
        if self._body.overflow:
            return ContentStep(data, Invalid(replies.MESSAGE_TOO_BIG), Effect.END_TRANSACTION)
        return ContentStep(data, EndOfData(self._body.size, self._body.received.count))


class BdatReader:
    """The accepted BDAT chunks of one transaction."""

    __slots__ = ("_body", "_declared", "_last", "_normaliser", "_remaining")

    def __init__(self, max_size: int) -> None:
        self._body = MessageBody(max_size)
        self._normaliser = CrlfNormaliser()
        self._declared = 0
        self._remaining = 0
        self._last = False

    def begin(self, size: int, last: bool) -> None:
        self._declared = self._remaining = size
        self._last = last

    def read(self, buf: bytearray) -> ContentStep:
        piece = _take(buf, self._remaining)
        self._remaining -= len(piece)
        final = self._last and self._remaining == 0
        data = self._body.accept(self._normaliser.feed(piece, final=final))
        if self._remaining:
            return ContentStep(data)
        return ContentStep(data, *self._chunk_end())

    def _chunk_end(self) -> tuple[Event, Effect]:
        if self._body.overflow:
            effect = Effect.END_TRANSACTION if self._last else Effect.FAIL_TRANSACTION
            return Invalid(replies.MESSAGE_TOO_BIG), effect
        if self._last:
            return EndOfData(self._body.size, self._body.received.count), Effect.NONE
        return BdatChunkEnd(self._declared), Effect.NONE


class ChunkSkipper:
    """The octets of a refused BDAT chunk: read, dropped, then answered with ``refusal``."""

    __slots__ = ("_refusal", "_remaining")

    def __init__(self, size: int, refusal: Reply) -> None:
        self._remaining = size
        self._refusal = refusal

    def read(self, buf: bytearray) -> ContentStep:
        self._remaining -= len(_take(buf, self._remaining))
        if self._remaining:
            return ContentStep(b"")
        return ContentStep(b"", Invalid(self._refusal))


ContentReader = DataReader | BdatReader | ChunkSkipper


def _take(buf: bytearray, limit: int) -> bytes:
    """Remove and return up to ``limit`` bytes from the front of ``buf``."""
    count = min(limit, len(buf))
    piece = bytes(buf[:count])
    del buf[:count]
    return piece
