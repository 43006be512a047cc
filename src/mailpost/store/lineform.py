"""Is a message body already in the form a POP3 multi-line response carries it?

Theory of operation
-------------------
A POP3 RETR response (RFC 1939 §3) and SMTP's DATA (RFC 5321 §4.5.2) need lines ended by CRLF
and a dot doubled at the start of every line that begins with one. Most stored bodies already
qualify: SMTP turns every bare CR or LF into CRLF on receipt, and a line starting with "." is
rare. Checking that when the message is sent costs four scans of the octets every time it is
downloaded; checking it once while the body is written costs them once. So every body writer
runs a :class:`WireFormCheck` over what it is given, the verdict is kept with the message
(:attr:`~mailpost.store.types.MessageMeta.wire_ready`), and a sender can put a ready body on
the wire unchanged. (Dovecot keeps a similar per-message flag for the same reason.)

A body is *ready* when every CR is followed by LF, every LF follows a CR, no line starts with
".", and it is empty or ends with CRLF. The check takes the octets in pieces of any size; each
piece costs a few C-level scans (``count``, ``in``), and a CR at the end of one piece is
settled by the first octet of the next.
"""

from __future__ import annotations

_CRLF = b"\r\n"


class WireFormCheck:
    """Feed a body in pieces; :attr:`ready` says whether it can be sent as it is."""

    __slots__ = ("_at_line_start", "_empty", "_pending_cr", "_ready")

    def __init__(self) -> None:
        self._ready = True
        self._at_line_start = True  # the body starts a line
        self._pending_cr = False  # the previous piece ended with CR
        self._empty = True

    def feed(self, data: bytes) -> None:
        """Take the next piece of the body."""
        if not self._ready or not data:
            return
        self._empty = False
        if self._pending_cr:
            if data[:1] != b"\n":
                self._ready = False  # a bare CR across the boundary
                return
            data = data[1:]
            self._pending_cr = False
            self._at_line_start = True
        if data.endswith(b"\r"):
            data = data[:-1]
            self._pending_cr = True
        if data:
            self._check(data)

    @property
    def ready(self) -> bool:
        """The verdict for everything fed so far, taken as the whole body."""
        return self._ready and (self._empty or (self._at_line_start and not self._pending_cr))

    def _check(self, data: bytes) -> None:
        """A piece with no CR at its end and none pending before it."""
        carriage_returns = data.count(b"\r")
        if carriage_returns != data.count(b"\n") or carriage_returns != data.count(_CRLF):
            self._ready = False  # a bare CR or LF
        elif (self._at_line_start and data.startswith(b".")) or b"\r\n." in data:
            self._ready = False  # a line that would need dot-stuffing
        self._at_line_start = data.endswith(b"\n")
