"""Assembling commands from lines and literals, including streamed APPEND messages.

Theory of operation
-------------------
:class:`CommandReader` consumes the front of the receive buffer while the protocol machine is
reading commands. It is always in one :class:`Mode`:

* ``LINE``: the next line (fragment) of a command. A fragment without a literal marker ends
  the command, which is then parsed whole (:func:`~mailpost.imap.parser.parse_command`);
  one with a marker announces a literal (:mod:`mailpost.imap.reader`).
* ``LITERAL``: octets of a literal that belongs to the command (a LOGIN password, a SEARCH
  string), buffered up to the literal limit.
* ``STREAM``: octets of an APPEND message, handed out as ``AppendData`` as they come.
* ``DISCARD_LITERAL`` and ``DISCARD_REST``: a refused non-synchronising literal and the
  lines that follow it up to the end of the refused command (RFC 7888 §4 option 1); more
  non-synchronising literals there are skipped too. Nothing skipped is ever held.

A synchronising literal, and every APPEND message, first produces a decision event
(``LiteralRequest`` / ``AppendMessage``); the protocol machine calls :meth:`accept` or
:meth:`reject` with the session's answer. Every limit violation becomes a ``BadCommand`` that
the reader produces by itself; when the client's octets cannot be skipped at a bounded cost
(a non-synchronising literal larger than the command budget, or a size beyond ``number64``)
it produces ``Fatal`` instead. All limits come from the :class:`Limits` passed to
:meth:`step`, so the protocol can switch them at authentication.
"""

from __future__ import annotations

import enum
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import ClassVar

from mailpost.imap import append as appendgrammar
from mailpost.imap.cursor import Literal
from mailpost.imap.errors import ParseError
from mailpost.imap.events import (
    NEED_DATA,
    AppendData,
    AppendDone,
    AppendMessage,
    BadCommand,
    Event,
    Fatal,
    LiteralRequest,
    Sentinel,
)
from mailpost.imap.parser import ParseContext, parse_command, peek_command
from mailpost.imap.reader import (
    BadMarker,
    LineReader,
    LineStatus,
    LiteralMarker,
    find_literal_marker,
)

LITERAL_MINUS_LIMIT = 4096  # RFC 7888 §5 and RFC 9051 §4.3
MAX_LITERALS = 1000  # buffered literals per command (APPEND messages are not buffered)

Marker = LiteralMarker | BadMarker | None
StepResult = Event | Sentinel | None  # None: keep going


@dataclass(frozen=True, slots=True)
class Limits:
    """Bounds for one command: line length, one buffered literal, all buffered octets of a
    command, and nesting depth. ``authenticated`` also caps APPEND messages at ``literal``
    before authentication."""

    line: int
    literal: int
    command: int
    nesting: int
    authenticated: bool


class Mode(enum.Enum):
    LINE = enum.auto()
    LITERAL = enum.auto()
    STREAM = enum.auto()
    DISCARD_LITERAL = enum.auto()
    DISCARD_REST = enum.auto()


@dataclass(slots=True)
class _AppendState:
    mailbox: str | None = None
    count: int = 0
    after_utf8: bool = False
    nul_seen: bool = False


@dataclass(slots=True)
class _Pending:
    """A command whose lines and literals are being collected."""

    tag: str | None
    name: str
    fragments: list[bytes] = field(default_factory=list)
    literals: list[Literal] = field(default_factory=list)
    buffered: int = 0
    append: _AppendState | None = None


class CommandReader:
    """See the module docstring. ``lines`` is shared with the protocol's IDLE/AUTH lines."""

    def __init__(self, lines: LineReader, *, literal_plus: bool = True) -> None:
        self.lines = lines
        self.mode = Mode.LINE
        self._literal_plus = literal_plus
        self._pending: _Pending | None = None
        self._remaining = 0
        self._binary = False
        self._literal = bytearray()
        self._ready: deque[Event] = deque()
        self._limits = Limits(8192, 8192, 16384, 1, authenticated=False)
        self._context = ParseContext()

    @property
    def holding(self) -> int:
        """Octets of a literal being buffered (the protocol reports them as buffered)."""
        return len(self._literal)

    def step(self, buf: bytearray, limits: Limits, context: ParseContext) -> Event | Sentinel:
        """Consume ``buf`` until an event is ready or more data is needed."""
        self._limits, self._context = limits, context
        while True:
            if self._ready:
                return self._ready.popleft()
            result = self._STEPS[self.mode](self, buf)
            if result is not None:
                return result

    def reset(self) -> None:
        """Forget everything (STARTTLS, COMPRESS, close)."""
        self.mode = Mode.LINE
        self._pending = None
        self._literal.clear()
        self._ready.clear()

    def accept(self, decision: LiteralRequest | AppendMessage) -> None:
        if isinstance(decision, AppendMessage):
            assert self._pending is not None and self._pending.append is not None
            self._pending.append.nul_seen = False
            self._start(Mode.STREAM, decision.size, binary=decision.binary)
        else:
            self._start(Mode.LITERAL, decision.size, binary=False)

    def reject(self, decision: LiteralRequest | AppendMessage) -> bool:
        """Drop the command; skip a non-synchronising message. False if that is unaffordable
        (the caller must then close the connection)."""
        self._drop()
        if isinstance(decision, AppendMessage) and not decision.synchronizing:
            if decision.size > self._limits.command:
                return False
            self._start(Mode.DISCARD_LITERAL, decision.size, binary=True)
        return True

    # --- lines ----------------------------------------------------------------------------

    def _line_step(self, buf: bytearray) -> StepResult:
        status, line = self.lines.read(buf, self._limits.line)
        if status is LineStatus.NEED_DATA:
            return NEED_DATA
        if status is LineStatus.TOO_LONG:
            return self._line_too_long(line)
        pending = self._pending or self._begin(line)
        if status is LineStatus.BARE_LF:
            self._drop()
            return BadCommand(pending.tag, "Lines must end with CRLF")
        marker = find_literal_marker(line)
        if pending.append is not None and pending.append.mailbox is not None:
            pending.fragments, pending.buffered = [], 0  # only the newest fragment matters
        pending.fragments.append(line if marker is None else line[: marker.start])
        pending.buffered += len(line)
        if pending.buffered > self._limits.command:
            return self._refuse(marker, "Command too long", "LIMIT")
        if pending.append is not None:
            return self._append_fragment(pending, pending.append, marker)
        if marker is None:
            return self._complete(pending)
        return self._literal_announced(pending, marker)

    def _begin(self, line: bytes) -> _Pending:
        tag, name = peek_command(line)
        self._pending = _Pending(tag, name, append=_AppendState() if name == "APPEND" else None)
        return self._pending

    def _complete(self, pending: _Pending) -> Event:
        self._pending = None
        try:
            return parse_command(pending.fragments, pending.literals, self._context)
        except ParseError as exc:
            return BadCommand(pending.tag, exc.text, exc.code, exc.status)

    def _line_too_long(self, summary: bytes) -> Event:
        head, tail = LineReader.split_summary(summary)
        tag = self._pending.tag if self._pending is not None else peek_command(head)[0]
        self._pending = _Pending(tag, "")
        return self._refuse(find_literal_marker(tail), "Line too long", "LIMIT")

    # --- literals -------------------------------------------------------------------------

    def _literal_announced(self, pending: _Pending, marker: LiteralMarker | BadMarker) -> StepResult:
        if isinstance(marker, BadMarker):
            return self._refuse(marker, "Literal size out of range", "TOOBIG")
        problem = self._literal_problem(pending, marker)
        if problem is not None:
            return self._refuse(marker, *problem)
        if marker.synchronizing:
            return LiteralRequest(pending.tag or "", pending.name, marker.size)
        self._start(Mode.LITERAL, marker.size, binary=False)
        return None

    def _literal_problem(self, pending: _Pending, marker: LiteralMarker) -> tuple[str, str] | None:
        if pending.tag is None:
            return "Missing or invalid tag", "PARSE"
        if marker.binary:  # literal8 only carries APPEND data (RFC 3516 §4.4, RFC 6855 §4)
            return "literal8 is not allowed here", "PARSE"
        limits = self._limits
        if marker.size > limits.literal or pending.buffered + marker.size > limits.command:
            return "Literal too big", "TOOBIG"
        if len(pending.literals) >= MAX_LITERALS:
            return "Too many literals", "LIMIT"
        return self._literal_minus_problem(marker)

    def _literal_minus_problem(self, marker: LiteralMarker) -> tuple[str, str] | None:
        minus = not self._literal_plus and not marker.synchronizing
        if minus and marker.size > LITERAL_MINUS_LIMIT:
            return "Non-synchronizing literal over 4096 octets", "TOOBIG"
        return None

    def _refuse(self, marker: Marker, text: str, code: str) -> Event:
        """Reject the command being read; skip a non-synchronising literal if affordable."""
        bad = BadCommand(self._pending.tag if self._pending else None, text, code)
        if marker is None or marker.synchronizing:
            self._drop()  # the client sends nothing more of this command
            return bad
        if isinstance(marker, BadMarker) or marker.size > self._limits.command:
            return self._fatal(text)
        self._drop()
        self._start(Mode.DISCARD_LITERAL, marker.size, binary=True)
        return bad

    def _fatal(self, text: str) -> Fatal:
        """Give up: the peer's octets can no longer be framed (RFC 7888 §4 option 2)."""
        self._drop()
        return Fatal(text, "TOOBIG")

    def _drop(self) -> None:
        self._pending = None
        self.mode = Mode.LINE

    def _start(self, mode: Mode, size: int, *, binary: bool) -> None:
        self.mode = mode
        self._remaining = size
        self._binary = binary
        self._literal.clear()

    def _take(self, buf: bytearray) -> bytes:
        take = min(self._remaining, len(buf))
        chunk = bytes(buf[:take])
        del buf[:take]
        self._remaining -= take
        return chunk

    def _literal_step(self, buf: bytearray) -> StepResult:
        self._literal += self._take(buf)
        if self._remaining:
            return NEED_DATA
        assert self._pending is not None
        self._pending.literals.append(Literal(bytes(self._literal), self._binary))
        self._pending.buffered += len(self._literal)
        self._literal.clear()
        self.mode = Mode.LINE
        return None

    def _discard_literal_step(self, buf: bytearray) -> StepResult:
        self._take(buf)
        if self._remaining:
            return NEED_DATA
        self.mode = Mode.DISCARD_REST
        return None

    def _discard_rest_step(self, buf: bytearray) -> StepResult:
        """Skip the lines after a refused literal; more non-synchronising literals may follow."""
        status, line = self.lines.read(buf, self._limits.line)
        if status is LineStatus.NEED_DATA:
            return NEED_DATA
        if status is LineStatus.TOO_LONG:
            line = LineReader.split_summary(line)[1]
        marker = find_literal_marker(line)
        if isinstance(marker, LiteralMarker) and not marker.synchronizing:
            if marker.size > self._limits.command:
                return self._fatal("Literal too big to skip")
            self._start(Mode.DISCARD_LITERAL, marker.size, binary=True)
            return None
        self.mode = Mode.LINE
        return None

    # --- APPEND ---------------------------------------------------------------------------

    def _append_fragment(self, pending: _Pending, state: _AppendState, marker: Marker) -> StepResult:
        try:
            if state.mailbox is None:
                return self._append_header(pending, state, marker)
            spec = appendgrammar.parse_continuation(
                pending.fragments[-1], marker=marker is not None, after_utf8=state.after_utf8
            )
        except ParseError as exc:
            return self._refuse(marker, exc.text, exc.code or "PARSE")
        if spec is None:
            self._pending = None
            return AppendDone(pending.tag or "", state.mailbox, state.count)
        return self._announce_message(pending, state, spec, marker)

    def _append_header(self, pending: _Pending, state: _AppendState, marker: Marker) -> StepResult:
        header = appendgrammar.parse_header(
            pending.fragments, pending.literals, self._context, marker=marker is not None
        )
        if isinstance(header, str):  # the mailbox name itself is the literal
            assert marker is not None
            return self._literal_announced(pending, marker)
        state.mailbox = header.mailbox
        return self._announce_message(pending, state, header.first, marker)

    def _announce_message(
        self, pending: _Pending, state: _AppendState, spec: appendgrammar.MessageSpec, marker: Marker
    ) -> StepResult:
        assert marker is not None and state.mailbox is not None
        if isinstance(marker, BadMarker):
            return self._refuse(marker, "Literal size out of range", "TOOBIG")
        if spec.utf8 and not marker.binary:
            return self._refuse(marker, "UTF8 needs a literal8 (~{n})", "PARSE")
        problem = self._literal_minus_problem(marker)
        if not self._limits.authenticated and marker.size > self._limits.literal:
            problem = ("Literal too big before authentication", "TOOBIG")
        if problem is not None:
            return self._refuse(marker, *problem)
        state.after_utf8 = spec.utf8
        state.count += 1
        return AppendMessage(
            pending.tag or "", state.mailbox, spec.flags, spec.internal_date, marker.size,
            marker.synchronizing, marker.binary, spec.utf8, state.count - 1,
        )

    def _stream_step(self, buf: bytearray) -> StepResult:
        pending = self._pending
        assert pending is not None and pending.append is not None
        chunk = self._take(buf)
        if not self._binary and b"\x00" in chunk:
            pending.append.nul_seen = True
        if self._remaining == 0:
            self.mode = Mode.LINE
            if pending.append.nul_seen:
                self._refuse_nul(pending)
        if chunk:
            return AppendData(pending.tag or "", chunk)
        return NEED_DATA if self._remaining else None

    def _refuse_nul(self, pending: _Pending) -> None:
        """NUL is only allowed in literal8 (RFC 9051 §9 ``CHAR8``; catalogue I8)."""
        self._pending = None
        self.mode = Mode.DISCARD_REST
        self._ready.append(BadCommand(pending.tag, "NUL in message literal; use literal8"))

    _STEPS: ClassVar[dict[Mode, Callable[[CommandReader, bytearray], StepResult]]] = {
        Mode.LINE: _line_step,
        Mode.LITERAL: _literal_step,
        Mode.STREAM: _stream_step,
        Mode.DISCARD_LITERAL: _discard_literal_step,
        Mode.DISCARD_REST: _discard_rest_step,
    }
