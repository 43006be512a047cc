"""Multi-connection IMAP transcripts (in the spirit of imaptest scripts): format and runner.

Theory of operation
-------------------
A transcript is a text file that plays several IMAP connections of one user against the real
server, one command at a time, and says what each command must produce. :func:`parse` reads
it into :class:`Script` steps; :class:`Runner` plays them, reads every response up to the
tagged completion and matches the step's block of expectations against what came (patterns
are matched by ``transcript_match``). Independently of the expectations, every response is
also applied to the connection's model of its mailbox (``transcript_state``), which rejects
what no client could apply: an EXPUNGE during FETCH, a message number out of range, a UID
that changes. A failure raises :class:`TranscriptFailure` naming the file and line, each
expectation with whether it was met, every line received with whether it was expected, any
protocol violation, and the captured variables: enough to see at once what differs.

The steps run strictly one after another, and a command's effects are committed and
published before its tagged reply is sent, so what another connection sees at its next
command is deterministic; only pushed responses (IDLE) are waited for.

File format
-----------
``#`` starts a comment line; blank lines are ignored. The header, before the first step::

    connections: 2      connections 1..N, all logged in as ``user`` (default 1)
    messages: 3         deliver that many messages to INBOX over SMTP first (default 0)
    state: selected     "selected" (default: every connection SELECTs INBOX) or "authenticated"
    enable: QRESYNC     ENABLE this on every connection before the SELECT (default: none)
    user: bob@example.test       (default alice@example.test)
    xfail: reason       a known server bug: the transcript must fail (a strict xfail)

Message *i* has ``From: Sender i <sender-i@remote.test>``, ``Subject: Message i`` and the body
``Body of message i.``; the server adds its trace header fields in front. Then the steps, a
command line each, followed by what it must produce::

    1 STORE 1 +FLAGS (\\Seen)     send this command on connection 1, then expect:
    * 1 FETCH (FLAGS (\\Seen))    an untagged response, once
    > * 2 EXPUNGE                 one that comes after the line matched just above
    ? * 3 EXISTS                  one that may come
    ! * 1 EXPUNGE                 one that must not come
    ...                           other untagged responses (without this line, every
                                  untagged response must be expected)
    1 OK [MODIFIED 3] *           the tagged status: OK, NO or BAD (alone, any text);
                                  or "1 CLOSED": the server hangs up instead (after BYE)

Untagged expectations are met by distinct lines before the tagged status, in any order
unless ``>`` says otherwise. ``+ pattern`` expects a continuation request instead of a
status: the command stays open, and the next step line of that connection is sent as it is
(``1 DONE`` ends an IDLE) and expects the status. A step ``1 :wait`` sends nothing and waits
(up to ``WAIT_SECONDS``) for pushed responses that meet its expectations, as during IDLE;
``1 CLOSED`` after it waits for the server to hang up. A line ``:deliver`` delivers the next
numbered message to INBOX over SMTP, as mail arriving from outside.

Patterns compare structurally (see ``transcript_match``): ``$name`` captures on first use and
must be equal after, ``*`` at the end of a line or list accepts the rest, flag lists are
sets, FETCH/STATUS items are unordered, and ``$$`` is a plain ``$`` (``$$Forwarded``). In
commands ``$name`` is replaced by its value, ``$tag`` is the command's own tag, and
``<<text>>`` becomes a non-synchronizing literal (RFC 7888) of ``text``, each ``\\n`` sent as
CRLF.
"""

from __future__ import annotations

import re
import smtplib
import time
from dataclasses import dataclass, field
from pathlib import Path

from tests.e2e.harness import PASSWORD, ServerThread
from tests.imapserver.helpers import RawIMAP
from tests.imapserver.transcript_match import (
    Bindings,
    Token,
    match_line,
    match_text,
    tokenize,
)
from tests.imapserver.transcript_state import MailboxModel

WAIT_SECONDS = 5.0
_STEP = re.compile(r"^(\d+) (.+)$")
_STATUS = re.compile(r"^(\d+) (OK|NO|BAD|CLOSED)(?: (.*))?$")
_HEADER = re.compile(r"^([a-z]+):\s*(.*)$")
_LITERAL_TEXT = re.compile(r"<<(.*?)>>", re.DOTALL)
_NAME = re.compile(r"\$(\$|[A-Za-z_][A-Za-z0-9_]*)")


class TranscriptError(Exception):
    """The transcript itself is malformed."""


class TranscriptFailure(AssertionError):
    """The server did not answer as the transcript says."""


# -- the parsed form --------------------------------------------------------------------------

@dataclass
class Expectation:
    mode: str  # "must", "may" or "never"
    after_previous: bool
    text: str
    line: int

    @property
    def tokens(self) -> list[Token]:
        return tokenize(self.text.encode()[2:], pattern=True)  # past "* " or "+ "


@dataclass
class Step:
    conn: int
    command: str  # ":wait" for a wait step
    line: int
    expectations: list[Expectation] = field(default_factory=list)
    others_allowed: bool = False
    status: str | None = None  # "OK", "NO", "BAD" or "CLOSED"
    status_pattern: str = "*"
    continuation: Expectation | None = None

    @property
    def waits(self) -> bool:
        return self.command == ":wait"


@dataclass
class Script:
    name: str
    connections: int = 1
    messages: int = 0
    state: str = "selected"
    enable: str = ""
    user: str = "alice@example.test"
    xfail: str = ""
    steps: list[Step] = field(default_factory=list)


# -- parsing ----------------------------------------------------------------------------------

def parse(text: str, name: str) -> Script:
    script = Script(name)
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.rstrip()
        if not line or line.startswith("#"):
            continue
        try:
            _parse_line(script, line, number)
        except TranscriptError as exc:
            raise TranscriptError(f"{name}:{number}: {exc}") from None
    for step in script.steps:
        if step.status is None and step.continuation is None and not step.waits:
            raise TranscriptError(f"{name}:{step.line}: no status line for {step.command!r}")
    return script


def _parse_line(script: Script, line: str, number: int) -> None:
    header = _HEADER.match(line)
    if not script.steps and header is not None:
        _set_header(script, header.group(1), header.group(2))
        return
    status = _STATUS.match(line)
    if status is not None:
        _set_status(script, int(status.group(1)), status.group(2), status.group(3))
        return
    if line == ":deliver":
        script.steps.append(Step(0, line, number, status="OK"))
        return
    step = _STEP.match(line)
    if step is not None:
        conn = int(step.group(1))
        if not 1 <= conn <= script.connections:
            raise TranscriptError(f"no connection {conn}")
        script.steps.append(Step(conn, step.group(2), number))
        return
    if not script.steps:
        raise TranscriptError(f"expected a header or a step: {line!r}")
    _add_expectation(script.steps[-1], line, number)


def _set_header(script: Script, key: str, value: str) -> None:
    if key in ("connections", "messages"):
        setattr(script, key, int(value))
    elif key == "state" and value in ("selected", "authenticated"):
        script.state = value
    elif key in ("enable", "user", "xfail"):
        setattr(script, key, value)
    else:
        raise TranscriptError(f"unknown header {key}: {value}")


def _set_status(script: Script, conn: int, status: str, rest: str | None) -> None:
    step = script.steps[-1] if script.steps else None
    if step is None or step.conn != conn or step.status is not None or (
            step.waits and status != "CLOSED"):
        raise TranscriptError(f"status line for connection {conn} belongs to no command")
    step.status = status
    step.status_pattern = rest if rest else "*"


def _add_expectation(step: Step, line: str, number: int) -> None:
    if line == "...":
        step.others_allowed = True
        return
    modes = {"?": "may", "!": "never", ">": "must"}
    mode, after, body = "must", False, line
    if line[:2] in ("? ", "! ", "> "):
        mode, after, body = modes[line[0]], line[0] == ">", line[2:]
    if body.startswith("+ ") or body == "+":
        step.continuation = Expectation("must", False, body + (" *" if body == "+" else ""),
                                        number)
    elif body.startswith("* "):
        step.expectations.append(Expectation(mode, after, body, number))
    else:
        raise TranscriptError(f"not an expectation: {line!r}")


# -- the connections --------------------------------------------------------------------------

class Connection(RawIMAP):
    """A RawIMAP that remembers an open command (IDLE), can wait for pushed data, and keeps
    the client's model of its selected mailbox."""

    pending: tuple[str, str] | None = None  # (tag, command) of a command left open
    closed: bool = False

    def __init__(self, server: ServerThread) -> None:
        super().__init__(server)
        self.model = MailboxModel()

    def poll_response(self, deadline: float) -> bytes | None:
        """The next response if one arrives before ``deadline``, else None."""
        while b"\r\n" not in self.buffer:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            self.sock.settimeout(remaining)
            try:
                self._fill()
            except TimeoutError:
                return None
            finally:
                self.sock.settimeout(10)
        return self.read_response()


@dataclass
class Received:
    """What one step got: untagged lines, the line that ended it (None if none), and the
    responses a client could not have applied (see ``transcript_state``)."""

    untagged: list[bytes]
    final: bytes | None
    violations: list[str] = field(default_factory=list)
    closed: bool = False


def deliver_messages(server: ServerThread, user: str, last: int, first: int = 1) -> None:
    """Messages ``first``..``last`` (see :func:`numbered_message`) through the MX listener."""
    with smtplib.SMTP("127.0.0.1", server.port("smtp"), timeout=10) as client:
        for i in range(first, last + 1):
            client.sendmail(f"sender-{i}@remote.test", [user], numbered_message(i, user))


def numbered_message(i: int, user: str) -> bytes:
    return (f"From: Sender {i} <sender-{i}@remote.test>\r\nTo: {user}\r\n"
            f"Subject: Message {i}\r\nMessage-ID: <message-{i}@remote.test>\r\n"
            f"Date: Mon, {i % 28 + 1:02d} Jan 2024 10:00:00 +0000\r\n\r\n"
            f"Body of message {i}.\r\n").encode()


# -- running ----------------------------------------------------------------------------------

class Runner:
    def __init__(self, server: ServerThread, script: Script) -> None:
        self.server = server
        self.script = script
        self.bindings: Bindings = {}
        self.conns: dict[int, Connection] = {}
        self.delivered = script.messages

    def run(self) -> None:
        try:
            self._setup()
            for step in self.script.steps:
                self._play(step)
        finally:
            for conn in self.conns.values():
                conn.close()

    def _setup(self) -> None:
        script = self.script
        if script.messages:
            deliver_messages(self.server, script.user, script.messages)
        for number in range(1, script.connections + 1):
            conn = Connection(self.server)
            conn.login(script.user, PASSWORD)
            if script.enable:
                conn.ok(f"ENABLE {script.enable}")
            if script.state == "selected":
                _select_inbox(conn)
            self.conns[number] = conn

    def _play(self, step: Step) -> None:
        if step.command == ":deliver":
            self.delivered += 1
            deliver_messages(self.server, self.script.user, self.delivered, first=self.delivered)
            return
        conn = self.conns[step.conn]
        if conn.closed:
            raise TranscriptError(f"{self.where(step)}: connection {step.conn} is closed")
        if step.waits:
            self._wait(step, conn)
            return
        text = self.substitute(step.command, step)
        if conn.pending is not None:
            (tag, command), conn.pending = conn.pending, None
            conn.send(text.encode() + b"\r\n")
        else:
            tag, command = conn.next_tag(), text
            conn.send(tag.encode() + b" " + text.encode() + b"\r\n")
            _model_before(conn.model, command)
        self.bindings["tag"] = tag
        received = self._read(step, conn, tag, command)
        self._check(step, received)
        if step.continuation is not None:
            conn.pending = (tag, command)
        elif received.final is not None:
            _model_after(conn.model, command, received.final)

    def _read(self, step: Step, conn: Connection, tag: str, command: str) -> Received:
        received = Received([], None)
        while True:
            try:
                line = conn.read_response()
            except (ConnectionError, OSError):
                conn.closed = received.closed = True
                return received
            if line.startswith(tag.encode() + b" "):
                received.final = line[len(tag) + 1:]
                return received
            if line.startswith(b"+") and step.continuation is not None:
                received.final = line
                return received
            _observe(conn, line, command, received)

    def _wait(self, step: Step, conn: Connection) -> None:
        deadline = time.monotonic() + WAIT_SECONDS
        received = Received([], None)
        command = conn.pending[1] if conn.pending is not None else "(waiting)"
        while not received.closed and (step.status == "CLOSED" or solve(
                step, received.untagged, None, self.bindings) is None):
            try:
                line = conn.poll_response(deadline)
            except (ConnectionError, OSError):
                conn.closed = received.closed = True
                break
            if line is None:
                break
            _observe(conn, line, command, received)
        self._check(step, received)

    def _check(self, step: Step, received: Received) -> None:
        found = solve(step, received.untagged, received.final, self.bindings)
        if received.closed != (step.status == "CLOSED"):
            found = None
        if found is None or received.violations:
            raise TranscriptFailure(report(self.where(step), step, received, self.bindings))
        self.bindings = found
        if step.status == "CLOSED":
            self.conns[step.conn].closed = True

    def where(self, step: Step) -> str:
        return f"{self.script.name}:{step.line}"

    def substitute(self, command: str, step: Step) -> str:
        def value(found: re.Match[str]) -> str:
            if found.group(1) == "$":
                return "$"
            if found.group(1) not in self.bindings:
                raise TranscriptError(f"{self.where(step)}: ${found.group(1)} is not set")
            return self.bindings[found.group(1)]
        text = _NAME.sub(value, command)
        return _LITERAL_TEXT.sub(_literal, text)


def _observe(conn: Connection, line: bytes, command: str, received: Received) -> None:
    received.untagged.append(line)
    violation = conn.model.observe(line, command)
    if violation is not None:
        received.violations.append(f"line {len(received.untagged)}: {violation}")


def _model_before(model: MailboxModel, command: str) -> None:
    if _verb(command) in ("SELECT", "EXAMINE"):
        model.select(0)  # the EXISTS of the answer sets the count


def _model_after(model: MailboxModel, command: str, final: bytes) -> None:
    verb, ok = _verb(command), final.startswith(b"OK")
    if (verb in ("SELECT", "EXAMINE") and not ok) or (verb in ("CLOSE", "UNSELECT") and ok):
        model.leave()


def _verb(command: str) -> str:
    return command.split(" ", 1)[0].upper()


def _select_inbox(conn: Connection) -> None:
    """SELECT INBOX and learn every UID, so the model can check numbers from the start."""
    _model_before(conn.model, "SELECT INBOX")
    for line in conn.ok("SELECT INBOX") + conn.ok("UID FETCH 1:* (UID)"):
        violation = conn.model.observe(line, "SELECT")
        assert violation is None, violation


def _literal(found: re.Match[str]) -> str:
    content = found.group(1).replace("\\n", "\r\n")
    return f"{{{len(content.encode())}+}}\r\n{content}"


# -- matching a step --------------------------------------------------------------------------

def solve(step: Step, untagged: list[bytes], final: bytes | None,
          bindings: Bindings) -> Bindings | None:
    """Bindings under which ``untagged`` and ``final`` meet every expectation of ``step``,
    or None. A small backtracking search: expectations are few."""
    lines = [tokenize(line[2:]) if line.startswith(b"* ") else None for line in untagged]
    return _search(step, lines, final, 0, [], -1, bindings)


def _search(step: Step, lines: list[list[Token] | None], final: bytes | None, index: int,
            used: list[int], last: int, bindings: Bindings) -> Bindings | None:
    if index == len(step.expectations):
        return _complete(step, lines, final, used, bindings)
    expectation = step.expectations[index]
    if expectation.mode == "never":
        return _search(step, lines, final, index + 1, used, last, bindings)
    pattern = expectation.tokens
    for position, tokens in enumerate(lines):
        if tokens is None or position in used:
            continue
        if expectation.after_previous and position < last:
            continue
        found = match_line(pattern, tokens, bindings)
        if found is not None:
            result = _search(step, lines, final, index + 1, [*used, position], position, found)
            if result is not None:
                return result
    if expectation.mode == "may":
        return _search(step, lines, final, index + 1, used, last, bindings)
    return None


def _complete(step: Step, lines: list[list[Token] | None], final: bytes | None,
              used: list[int], bindings: Bindings) -> Bindings | None:
    if not step.others_allowed and len(used) < len(lines):
        return None
    for expectation in step.expectations:
        if expectation.mode == "never" and _any_match(expectation, lines, bindings):
            return None
    return _final(step, final, bindings)


def _any_match(expectation: Expectation, lines: list[list[Token] | None],
               bindings: Bindings) -> bool:
    pattern = expectation.tokens
    return any(tokens is not None and match_line(pattern, tokens, bindings) is not None
               for tokens in lines)


def _final(step: Step, final: bytes | None, bindings: Bindings) -> Bindings | None:
    if step.status == "CLOSED" or step.waits:
        return bindings if final is None else None
    if final is None:
        return None
    if step.continuation is not None:
        if not final.startswith(b"+"):
            return None
        return match_line(step.continuation.tokens, tokenize(final[2:]), bindings)
    words = final.split(b" ", 1)
    assert step.status is not None
    found = match_text(step.status, words[0].decode(), bindings, folded=True)
    if found is None:
        return None
    rest = tokenize(words[1] if len(words) > 1 else b"")
    return match_line(tokenize(step.status_pattern.encode(), pattern=True), rest, found)


# -- reporting --------------------------------------------------------------------------------

def report(where: str, step: Step, received: Received, bindings: Bindings) -> str:
    """A precise account of a failed step: what was expected, what came, what differs."""
    lines = [tokenize(line[2:]) if line.startswith(b"* ") else None
             for line in received.untagged]
    out = [f"{where}: {step.conn} {step.command}", "  expected:"]
    claimed: set[int] = set()
    current = dict(bindings)
    for expectation in step.expectations:
        position, found = _first_match(expectation, lines, claimed, current)
        if expectation.mode == "never":
            mark = "FOUND (forbidden)" if position is not None else "absent, good"
        elif position is None:
            mark = "MISSING" if expectation.mode == "must" else "absent (optional)"
        else:
            mark = f"met by received line {position + 1}"
            claimed.add(position)
            current = found or current
        prefix = {"must": "> " if expectation.after_previous else "", "may": "? ",
                  "never": "! "}[expectation.mode]
        out.append(f"    {prefix}{expectation.text}    <- {mark}")
    final_ok = received.closed == (step.status == "CLOSED") and \
        _final(step, received.final, current) is not None
    out.append(f"    {_expected_final(step)}    <- {'met' if final_ok else 'DIFFERS'}")
    out.append("  received:")
    for number, raw in enumerate(received.untagged, start=1):
        flag = "" if number - 1 in claimed or step.others_allowed else "    <- NOT EXPECTED"
        out.append(f"    {number}. {raw.decode('utf-8', 'replace')}{flag}")
    out.append(f"    end: {_ending(step, received)}")
    out.extend(f"  PROTOCOL VIOLATION at received {v}" for v in received.violations)
    out.append(f"  variables: {bindings}")
    if all(mark not in "\n".join(out) for mark in ("MISSING", "FOUND", "NOT EXPECTED",
                                                    "VIOLATION", "DIFFERS")):
        out.append("  (each line matches alone: an ordering rule, a variable or the end differs)")
    return "\n".join(out)


def _first_match(expectation: Expectation, lines: list[list[Token] | None], claimed: set[int],
                 bindings: Bindings) -> tuple[int | None, Bindings | None]:
    pattern = expectation.tokens
    for position, tokens in enumerate(lines):
        if tokens is None or (position in claimed and expectation.mode != "never"):
            continue
        found = match_line(pattern, tokens, bindings)
        if found is not None:
            return position, found
    return None, None


def _ending(step: Step, received: Received) -> str:
    if received.final is not None:
        return received.final.decode("utf-8", "replace")
    if received.closed:
        return "(the server closed the connection)"
    return f"(nothing more within {WAIT_SECONDS:g} s)" if step.waits else "(no tagged reply)"


def _expected_final(step: Step) -> str:
    if step.status == "CLOSED":
        return f"{step.conn} CLOSED    (the server closes the connection)"
    if step.waits:
        return "(no tagged reply: waiting for pushed responses)"
    if step.continuation is not None:
        return f"{step.continuation.text}    (continuation request)"
    return f"{step.conn} {step.status} {step.status_pattern}"


def load(path: Path) -> Script:
    return parse(path.read_text(encoding="utf-8"), path.name)


def run_file(server: ServerThread, path: Path) -> None:
    Runner(server, load(path)).run()
