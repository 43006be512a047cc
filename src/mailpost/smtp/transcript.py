"""Drive a protocol machine synchronously, without I/O: for tests and replay tools.

Theory of operation
-------------------
:func:`feed` gives bytes to a :class:`~mailpost.smtp.protocol.SMTPServerProtocol`
and then pulls events until the machine needs more input, answering each
event that needs a reply with ``answer(event)`` exactly as an asyncio session
would. The result lists every event with the reply sent for it and the wire
bytes, so a test can assert on the conversation as a whole.

:func:`standard_reply` is the policy-free answer to each event: the positive
reply where one exists (250, 354, 221 ...), the machine's own reply for
``Invalid``, and refusals where a real policy is needed (AUTH: 504; VRFY:
252). It is what the plain "accept everything" peer of a test says.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from mailpost.smtp import events as ev
from mailpost.smtp import replies
from mailpost.smtp.events import Event, Sentinel
from mailpost.smtp.protocol import SMTPServerProtocol
from mailpost.smtp.replies import Reply

Answer = Callable[[Event], Reply]

_STANDARD: dict[type[Event], Reply] = {
    ev.Hello: replies.OK,
    ev.StartTLS: replies.READY_TO_START_TLS,
    ev.Auth: replies.AUTH_MECHANISM_UNSUPPORTED,
    ev.AuthResponse: replies.AUTH_FAILED,
    ev.AuthAbort: replies.AUTH_ABORTED,
    ev.MailFrom: replies.SENDER_OK,
    ev.RcptTo: replies.RECIPIENT_OK,
    ev.Data: replies.START_DATA,
    ev.BdatChunkEnd: replies.OK,
    ev.EndOfData: replies.MESSAGE_ACCEPTED,
    ev.Reset: replies.OK,
    ev.Noop: replies.OK,
    ev.Quit: replies.BYE,
    ev.Vrfy: replies.CANNOT_VRFY,
    ev.Expn: replies.NOT_IMPLEMENTED,
    ev.Help: replies.HELP,
}


def standard_reply(event: Event) -> Reply:
    """The policy-free answer to ``event`` (see the module docstring)."""
    if isinstance(event, ev.Invalid):
        return event.reply
    return _STANDARD[type(event)]


@dataclass(frozen=True, slots=True)
class Exchange:
    """One event and, if it needed one, the reply sent and its wire bytes."""

    event: Event
    reply: Reply | None = None
    wire: bytes = b""


def feed(
    protocol: SMTPServerProtocol, data: bytes, answer: Answer = standard_reply
) -> list[Exchange]:
    """Feed ``data`` (``b""`` for EOF) and answer events until the machine waits for input.

    Stops at ``NEED_DATA``, at ``PAUSED`` (STARTTLS accepted: call ``tls_started()``)
    and after ``ConnectionClosed``.
    """
    protocol.receive_data(data)
    return drain(protocol, answer)


def drain(protocol: SMTPServerProtocol, answer: Answer = standard_reply) -> list[Exchange]:
    """Answer events already buffered in ``protocol``; see :func:`feed`."""
    exchanges: list[Exchange] = []
    while True:
        event = protocol.next_event()
        if isinstance(event, Sentinel):
            return exchanges
        if not ev.needs_reply(event):
            exchanges.append(Exchange(event))
            if isinstance(event, ev.ConnectionClosed):
                return exchanges
            continue
        reply = answer(event)
        exchanges.append(Exchange(event, reply, protocol.send(reply)))


def events_of(exchanges: list[Exchange]) -> list[Event]:
    """The events alone, with consecutive DataChunks merged (their split is arbitrary)."""
    merged: list[Event] = []
    for exchange in exchanges:
        event = exchange.event
        previous = merged[-1] if merged else None
        if isinstance(event, ev.DataChunk) and isinstance(previous, ev.DataChunk):
            merged[-1] = ev.DataChunk(previous.data + event.data)
        else:
            merged.append(event)
    return merged


def codes_of(exchanges: list[Exchange]) -> list[int]:
    """The reply codes sent, in order."""
    return [exchange.reply.code for exchange in exchanges if exchange.reply is not None]


def content_of(exchanges: list[Exchange]) -> bytes:
    """All message content handed out, concatenated."""
    return b"".join(e.event.data for e in exchanges if isinstance(e.event, ev.DataChunk))


__all__ = [
    "Answer",
    "Exchange",
    "codes_of",
    "content_of",
    "drain",
    "events_of",
    "feed",
    "standard_reply",
]
