"""Helpers shared by the IMAP protocol tests: a deterministic peer that answers every event.

``run(stream)`` feeds the stream (whole or in the given chunks) into a fresh
:class:`IMAPServerProtocol`, answers each event the way a simple, permissive session would
and returns the events with consecutive ``AppendData`` chunks merged, so that two runs can be
compared whatever the chunking.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from mailpost.imap import commands as cmd
from mailpost.imap import events as ev
from mailpost.imap.protocol import IMAPServerProtocol
from mailpost.imap.responses import Bye, Continuation, Response, Tagged

Event = ev.Event


@dataclass
class Transcript:
    events: list[Event] = field(default_factory=list)
    wire: bytearray = field(default_factory=bytearray)
    protocol: IMAPServerProtocol | None = None

    def commands(self) -> list[cmd.Command]:
        return [e for e in self.events if isinstance(e, cmd.Command)]

    def of(self, kind: type) -> list:  # type: ignore[type-arg]
        return [e for e in self.events if isinstance(e, kind)]


def standard_answer(event: Event) -> Response | None:
    """OK for commands, ``+`` for IDLE, the ready-made response for BadCommand/Fatal."""
    if isinstance(event, (ev.BadCommand, ev.Fatal)):
        return event.response
    if isinstance(event, cmd.Idle):
        return Continuation("idling")
    if isinstance(event, (cmd.StartTLS, cmd.Compress)):
        return Tagged(event.tag, "NO", "not here")  # keep the stream plaintext
    if isinstance(event, (ev.AuthenticateCancel,)):
        return Tagged(event.tag, "BAD", "cancelled")
    if isinstance(event, (cmd.Command, ev.AppendDone, ev.Done, ev.AuthenticateResponse)):
        return Tagged(event.tag, "OK", "done")
    return None


Answer = Callable[[Event], Response | None]


def run(
    stream: bytes | Iterable[bytes],
    *,
    answer: Answer = standard_answer,
    accept: Callable[[ev.LiteralRequest | ev.AppendMessage], bool] = lambda e: True,
    **options: object,
) -> Transcript:
    """Drive a fresh machine over ``stream`` (authenticated unless told otherwise)."""
    options.setdefault("authenticated", True)
    proto = IMAPServerProtocol(**options)  # type: ignore[arg-type]
    out = Transcript(protocol=proto)
    chunks = [stream] if isinstance(stream, bytes) else list(stream)
    for chunk in chunks:
        if chunk:
            proto.receive_data(chunk)
        _drain(proto, out, answer, accept)
    proto.receive_data(b"")
    _drain(proto, out, answer, accept)
    return out


def _drain(
    proto: IMAPServerProtocol,
    out: Transcript,
    answer: Answer,
    accept: Callable[[ev.LiteralRequest | ev.AppendMessage], bool],
) -> None:
    while True:
        event = proto.next_event()
        if event in (ev.NEED_DATA, ev.PAUSED):
            return
        assert not isinstance(event, ev.Sentinel)
        _record(out, event)
        if isinstance(event, ev.ConnectionClosed):
            return
        if isinstance(event, (ev.LiteralRequest, ev.AppendMessage)):
            if accept(event):
                out.wire += proto.accept_literal()
            else:
                out.wire += proto.reject_literal(Tagged(event.tag, "NO", "refused"))
            continue
        response = answer(event)
        if response is not None:
            out.wire += proto.send(response)
        if isinstance(response, Bye):
            return


def _record(out: Transcript, event: Event) -> None:
    last = out.events[-1] if out.events else None
    if isinstance(event, ev.AppendData) and isinstance(last, ev.AppendData):
        out.events[-1] = ev.AppendData(event.tag, last.data + event.data)
    else:
        out.events.append(event)


def one(line: bytes, **options: object) -> Event:
    """The single event produced by one complete command (literal requests accepted)."""
    skip = (ev.ConnectionClosed, ev.LiteralRequest)
    events = [e for e in run(line, **options).events if not isinstance(e, skip)]
    assert len(events) == 1, events
    return events[0]


def split_every(data: bytes, size: int) -> list[bytes]:
    return [data[i : i + size] for i in range(0, len(data), size)]
