"""Exceptions of the IMAP protocol core.

Theory of operation
-------------------
Two kinds of mistakes exist and they never mix:

* :class:`ParseError` is the *peer's* mistake: a command that breaks the RFC 9051 §9 grammar
  or one of our limits. It is raised deep inside the grammar code and caught by the protocol
  machine, which turns it into a :class:`~mailpost.imap.events.BadCommand` event. It never
  escapes :meth:`~mailpost.imap.protocol.IMAPServerProtocol.next_event`.
* :class:`LocalProtocolError` is *our* mistake: the session used the machine wrongly (sent a
  continuation nobody asked for, answered the wrong tag, fed data after EOF). It is a bug to
  fix, never something a client can trigger.

:class:`MUTF7Error` and :class:`SequenceRangeError` are ``ValueError`` subclasses raised by the
pure helpers in :mod:`mailpost.imap.mutf7` and :mod:`mailpost.imap.seqset`; the parser turns
the first into a ``ParseError`` and the session turns the second into ``BAD`` (RFC 9051 §9,
``seq-number``: "The server should respond with a tagged BAD response to a command that uses a
message sequence number greater than the number of messages in the selected mailbox").
"""

from __future__ import annotations


class ParseError(Exception):
    """A client syntax or limit error; becomes a ``BadCommand`` event.

    ``status`` is ``"BAD"`` for syntax errors and ``"NO"`` for the few refusals the grammar
    layer can decide alone (an unsupported SEARCH charset: ``NO [BADCHARSET ...]``).
    ``code`` is the response code text without brackets, e.g. ``"TOOBIG"``.
    """

    def __init__(self, text: str, *, code: str | None = None, status: str = "BAD") -> None:
        super().__init__(text)
        self.text = text
        self.code = code
        self.status = status


class LocalProtocolError(Exception):
    """The session used the protocol machine wrongly (a bug on our side, not the peer's)."""


class MUTF7Error(ValueError):
    """Text is not canonical modified UTF-7 (RFC 9051 Appendix A.1)."""


class SequenceRangeError(ValueError):
    """A message sequence number beyond the mailbox (answer ``BAD``, RFC 9051 §9)."""
