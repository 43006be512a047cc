"""Multi-connection transcripts against the real server (see ``transcript.py`` for the format),
and the matcher's own rules: each must be able to fail."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.e2e.harness import ServerThread
from tests.imapserver import transcript
from tests.imapserver.transcript import (
    Connection,
    Runner,
    Step,
    TranscriptError,
    TranscriptFailure,
    load,
    parse,
    solve,
)
from tests.imapserver.transcript_match import Bindings, match_line, tokenize
from tests.imapserver.transcript_state import MailboxModel

TRANSCRIPTS = sorted((Path(__file__).parent / "transcripts").glob("*.imap"))


def _param(path: Path) -> object:
    reason = load(path).xfail
    marks = [pytest.mark.xfail(reason=reason, strict=True)] if reason else []
    return pytest.param(path, id=path.stem, marks=marks)


@pytest.mark.parametrize("path", [_param(p) for p in TRANSCRIPTS])
def test_transcript(server: ServerThread, path: Path) -> None:
    Runner(server, load(path)).run()


# -- the matcher ------------------------------------------------------------------------------

def _matches(pattern: str, actual: bytes, bindings: Bindings | None = None) -> Bindings | None:
    return match_line(tokenize(pattern.encode(), pattern=True), tokenize(actual),
                      bindings or {})


@pytest.mark.parametrize(("pattern", "actual", "expected"), [
    # FETCH items are unordered pairs; flag lists are sets; atoms ignore case.
    (r"1 FETCH (FLAGS (\Seen \Flagged) UID 4)", rb"1 FETCH (UID 4 FLAGS (\Flagged \Seen))", True),
    (r"1 fetch (flags (\seen))", rb"1 FETCH (FLAGS (\Seen))", True),
    (r"1 FETCH (FLAGS (\Seen))", rb"1 FETCH (UID 4 FLAGS (\Seen))", False),
    (r"1 FETCH (FLAGS (\Seen) *)", rb"1 FETCH (UID 4 FLAGS (\Seen))", True),
    (r"1 FETCH (FLAGS (\Seen))", rb"1 FETCH (FLAGS (\Seen \Deleted))", False),
    (r"1 FETCH (FLAGS (\Seen *))", rb"1 FETCH (FLAGS (\Seen \Deleted))", True),
    # Other lists keep their order; a line must match to its end unless "*" says otherwise.
    ("SEARCH 1 2", b"SEARCH 2 1", False),
    ("SEARCH 1", b"SEARCH 1 2", False),
    ("OK [UIDNEXT 5] *", b"OK [UIDNEXT 5] Predicted next UID", True),
    ("OK [UIDNEXT 5]", b"OK [UIDNEXT 5] Predicted next UID", False),
    ("STATUS Work (UIDNEXT 3 MESSAGES 1)", b'STATUS "Work" (MESSAGES 1 UIDNEXT 3)', True),
    # astring: atom and string are one; NIL is not a string; strings keep their case.
    (r'LIST (\HasNoChildren) "/" INBOX', rb'LIST (\HasNoChildren) "/" "INBOX"', True),
    ("1 FETCH (ENVELOPE (NIL))", b'1 FETCH (ENVELOPE ("NIL"))', False),
    ('X "Abc"', b'X "abc"', False),
    # Literals compare by content, and "\r\n" in a pattern string is CRLF.
    (r'1 FETCH (BODY[HEADER.FIELDS (SUBJECT)] "S: x\r\n")',
     b"1 FETCH (BODY[HEADER.FIELDS (SUBJECT)] {6}\r\nS: x\r\n)", True),
    ("1 FETCH (FLAGS ($$Junk))", b"1 FETCH (FLAGS ($Junk))", True),
])
def test_patterns_compare_structurally(pattern: str, actual: bytes, expected: bool) -> None:
    assert (_matches(pattern, actual) is not None) is expected


def test_variables_capture_then_must_agree() -> None:
    found = _matches("OK [COPYUID $v 1:2 $a:$b] *", b"OK [COPYUID 77 1:2 5:6] Done")
    assert found == {"v": "77", "a": "5", "b": "6"}
    assert _matches("$x EXPUNGE", b"4 EXPUNGE", {"x": "3"}) is None
    assert _matches("$x EXPUNGE", b"3 EXPUNGE", {"x": "3"}) == {"x": "3"}
    assert _matches("$n FETCH (UID $n)", b"2 FETCH (UID 3)") is None


def _step(text: str) -> Step:
    return parse("connections: 1\n" + text, "inline").steps[0]


@pytest.mark.parametrize(("block", "untagged", "final", "ok"), [
    ("* 1 EXISTS\n1 OK", [b"* 1 EXISTS"], b"OK done", True),
    ("1 OK", [b"* 1 EXISTS"], b"OK done", False),  # every untagged line must be expected
    ("...\n1 OK", [b"* 1 EXISTS"], b"OK done", True),
    ("* 1 EXISTS\n1 OK", [], b"OK done", False),
    ("? * 1 EXISTS\n1 OK", [], b"OK done", True),
    ("! * 1 EXPUNGE\n...\n1 OK", [b"* 1 EXPUNGE"], b"OK done", False),
    ("* 2 EXPUNGE\n> * 1 EXPUNGE\n1 OK", [b"* 1 EXPUNGE", b"* 2 EXPUNGE"], b"OK x", False),
    ("* 2 EXPUNGE\n> * 1 EXPUNGE\n1 OK", [b"* 2 EXPUNGE", b"* 1 EXPUNGE"], b"OK x", True),
    ("* 1 EXPUNGE\n* 1 EXPUNGE\n1 OK", [b"* 1 EXPUNGE"], b"OK x", False),  # distinct lines
    ("1 NO [TRYCREATE] *", [], b"NO [TRYCREATE] No such mailbox", True),
    ("1 NO", [], b"OK done", False),
    ("1 OK [READ-WRITE] *", [], b"OK [READ-ONLY] done", False),
    ("+ *", [], b"+ idling", True),  # a continuation request leaves the command open
    ("+ *", [], b"OK done", False),
    ("1 CLOSED", [b"* BYE bye"], None, False),  # CLOSED wants no untagged line unexpected
    ("* BYE *\n1 CLOSED", [b"* BYE bye"], None, True),
    ("* BYE *\n1 CLOSED", [b"* BYE bye"], b"OK done", False),
])
def test_block_rules(block: str, untagged: list[bytes], final: bytes | None, ok: bool) -> None:
    step = _step("1 NOOP\n" + block)
    assert (solve(step, untagged, final, {}) is not None) is ok


def test_parse_rejects_malformed_transcripts() -> None:
    for text in ("1 OK\n", "colour: blue\n1 NOOP\n1 OK\n", "1 NOOP\n", "* 1 EXISTS\n",
                 "1 NOOP\n* 1 EXISTS\n2 OK\n", "3 NOOP\n3 OK\n", "1 NOOP\nfoo\n1 OK\n"):
        with pytest.raises(TranscriptError):
            parse("connections: 2\n" + text if not text.startswith("colour") else text, "bad")


# -- the client model -------------------------------------------------------------------------

def _model(uids: list[int]) -> MailboxModel:
    model = MailboxModel()
    model.select(len(uids))
    model.uids = list(uids)
    return model


def test_model_accepts_a_consistent_stream() -> None:
    model = _model([1, 2, 3, 4])
    for line in (b"* 4 EXPUNGE", b"* 2 EXPUNGE", b"* 3 EXISTS", b"* 3 FETCH (UID 7 FLAGS ())",
                 b"* VANISHED 1", b"* VANISHED (EARLIER) 40:50"):
        assert model.observe(line, "NOOP") is None, line
    assert model.uids == [3, 7]


@pytest.mark.parametrize(("line", "command", "rule"), [
    (b"* 2 EXPUNGE", "FETCH 1:* FLAGS", "during FETCH"),
    (b"* 2 EXPUNGE", "store 1 +FLAGS (\\Seen)", "during STORE"),
    (b"* VANISHED 2", "SEARCH ALL", "during SEARCH"),
    (b"* 5 EXPUNGE", "NOOP", "with 4 messages"),
    (b"* 3 EXISTS", "NOOP", "lowered the count"),
    (b"* 2 FETCH (UID 9 FLAGS ())", "NOOP", "was UID 2"),
    (b"* 9 FETCH (FLAGS ())", "NOOP", "with 4 messages"),
    (b"* VANISHED 8", "NOOP", "never saw"),
])
def test_model_flags_protocol_violations(line: bytes, command: str, rule: str) -> None:
    violation = _model([1, 2, 3, 4]).observe(line, command)
    assert violation is not None and rule in violation


def test_model_allows_expunge_during_uid_commands() -> None:
    for command in ("UID FETCH 1:* FLAGS", "UID STORE 1 +FLAGS (\\Seen)", "UID SEARCH ALL"):
        assert _model([1, 2, 3, 4]).observe(b"* 2 EXPUNGE", command) is None
        assert _model([1, 2, 3, 4]).observe(b"* VANISHED 2", command) is None


def test_model_checks_ascending_uids() -> None:
    model = _model([1, 5])
    model.observe(b"* 3 EXISTS", "NOOP")
    violation = model.observe(b"* 3 FETCH (UID 4)", "NOOP")
    assert violation is not None and "ascending" in violation


# -- the runner against the server ------------------------------------------------------------

def test_failure_report_names_line_and_difference(server: ServerThread, tmp_path: Path) -> None:
    script = tmp_path / "wrong.imap"
    script.write_text("connections: 2\nmessages: 1\n\n"
                      "1 STORE 1 +FLAGS.SILENT (\\Seen)\n1 OK\n"
                      "2 NOOP\n* 2 EXISTS\n2 OK\n")
    with pytest.raises(TranscriptFailure) as failure:
        Runner(server, load(script)).run()
    text = str(failure.value)
    assert text.startswith("wrong.imap:6: 2 NOOP")
    assert "* 2 EXISTS    <- MISSING" in text
    assert "1. * 1 FETCH (UID 1 FLAGS (\\Seen))    <- NOT EXPECTED" in text


real_select = transcript._select_inbox


def test_runner_reports_protocol_violations(server: ServerThread, tmp_path: Path) -> None:
    """Whatever a transcript expects, a response the client model cannot apply fails it."""
    script = tmp_path / "consistent.imap"
    script.write_text("messages: 1\n\n1 FETCH 1 (UID)\n* 1 FETCH (UID $uid)\n1 OK\n")
    Runner(server, load(script)).run()

    def select_then_forget(conn: Connection) -> None:
        real_select(conn)
        conn.model.uids = [9]  # as if the server had said message 1 was UID 9

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(transcript, "_select_inbox", select_then_forget)
        with pytest.raises(TranscriptFailure, match="PROTOCOL VIOLATION .*was UID 9"):
            Runner(server, load(script)).run()

