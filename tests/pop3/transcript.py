"""Drive the POP3 protocol machine synchronously, without I/O (test helper).

:func:`feed` gives bytes to a :class:`~mailpost.pop3.protocol.POP3ServerProtocol` and answers
every event with ``answer(proto, event)`` until the machine waits for input, exactly as the
asyncio session would; a streamed +OK is followed by :data:`BODY` through ``send_body`` and
``end_body``. :func:`standard_reply` is the policy-free "accept everything" peer.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from mailpost.pop3 import events as ev
from mailpost.pop3 import replies
from mailpost.pop3.protocol import POP3ServerProtocol
from mailpost.pop3.replies import Continuation, Reply, ok

BODY = b"Subject: test\r\n\r\n.leading dot\r\nlast line\r\n"
Answer = Callable[[POP3ServerProtocol, ev.Event], "Reply | Continuation"]


def standard_reply(proto: POP3ServerProtocol, event: ev.Event) -> Reply | Continuation:
    match event:
        case ev.Invalid(reply=reply):
            return reply
        case ev.Capa():
            return proto.capabilities(("PLAIN", "LOGIN"))
        case ev.Stls():
            return replies.READY_TO_START_TLS
        case ev.Auth(initial_response=None):
            return Continuation(b"")
        case ev.User() | ev.Pass() | ev.Auth() | ev.AuthResponse():
            return ok("welcome")
        case ev.AuthAbort():
            return replies.AUTH_ABORTED
        case ev.Stat():
            return ok("1 42")
        case ev.List(msg=None) | ev.Uidl(msg=None):
            return Reply(True, "listing follows", lines=("1 42",))
        case ev.Retr() | ev.Top():
            return Reply(True, "message follows", streamed=True)
        case ev.Quit():
            return replies.BYE
    return ok()


@dataclass(frozen=True, slots=True)
class Exchange:
    event: ev.Event
    wire: bytes = b""

    @property
    def status(self) -> str:
        """The first line of the response, without CRLF ("" for ConnectionClosed)."""
        return self.wire.split(b"\r\n", 1)[0].decode("utf-8")


def feed(proto: POP3ServerProtocol, data: bytes, answer: Answer = standard_reply,
         body: bytes = BODY) -> list[Exchange]:
    """Feed ``data`` (``b""`` for EOF) and answer events until the machine waits."""
    proto.receive_data(data)
    return drain(proto, answer, body)


def drain(proto: POP3ServerProtocol, answer: Answer = standard_reply,
          body: bytes = BODY) -> list[Exchange]:
    exchanges: list[Exchange] = []
    while True:
        event = proto.next_event()
        if isinstance(event, ev.Sentinel):
            return exchanges
        if isinstance(event, ev.ConnectionClosed):
            exchanges.append(Exchange(event))
            return exchanges
        wire = proto.send(answer(proto, event))
        if proto.body_open:
            wire += proto.send_body(body) + proto.end_body()
        exchanges.append(Exchange(event, wire))


def statuses(exchanges: list[Exchange]) -> list[str]:
    return [x.status for x in exchanges if not isinstance(x.event, ev.ConnectionClosed)]


def events(exchanges: list[Exchange]) -> list[ev.Event]:
    return [x.event for x in exchanges]


def logged_in(**options: object) -> POP3ServerProtocol:
    """A machine in the TRANSACTION state (under TLS unless told otherwise)."""
    options.setdefault("tls_active", True)
    proto = POP3ServerProtocol(**options)  # type: ignore[arg-type]
    assert statuses(feed(proto, b"USER alice\r\nPASS secret\r\n")) == ["+OK welcome"] * 2
    return proto
