"""The IMAP protocol core: a sans-I/O command parser and response writer.

Theory of operation
-------------------
Everything in this package is pure: bytes in, typed values out, and back. No module imports
asyncio, ssl or the store, so the whole grammar is testable without a socket. The layers, from
the wire up:

* :mod:`~mailpost.imap.reader` frames lines and finds literal markers;
  :mod:`~mailpost.imap.commandreader` assembles a command from lines and literals and streams
  APPEND messages; :mod:`~mailpost.imap.protocol` is the connection state machine the session
  drives (:class:`IMAPServerProtocol`).
* :mod:`~mailpost.imap.cursor` is the lexical layer (atoms, strings, literals, numbers,
  dates); :mod:`~mailpost.imap.parser`, :mod:`~mailpost.imap.mailboxargs`,
  :mod:`~mailpost.imap.extargs`, :mod:`~mailpost.imap.append`,
  :mod:`~mailpost.imap.search` and :mod:`~mailpost.imap.fetchatt` are the grammar, producing
  the dataclasses of :mod:`~mailpost.imap.commands` and :mod:`~mailpost.imap.events`.
* :mod:`~mailpost.imap.seqset` and :mod:`~mailpost.imap.mutf7` are value helpers the session
  uses too; :mod:`~mailpost.imap.responses` renders everything the server sends.

The session (written against this API) owns state such as the selected mailbox; this package
owns syntax, framing, limits and the few transitions that decide how the next octets are read.
"""

from __future__ import annotations

from mailpost.imap.errors import LocalProtocolError
from mailpost.imap.events import NEED_DATA, PAUSED
from mailpost.imap.protocol import IMAPServerProtocol, State

__all__ = ["NEED_DATA", "PAUSED", "IMAPServerProtocol", "LocalProtocolError", "State"]
