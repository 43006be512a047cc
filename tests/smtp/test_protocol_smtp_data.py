"""DATA and BDAT framing: end of data, dot transparency, smuggling, size limits, chunking."""

from __future__ import annotations

import pytest

from mailpost.smtp import events as ev
from mailpost.smtp import replies
from mailpost.smtp.protocol import NEED_DATA, SMTPServerProtocol, State
from mailpost.smtp.replies import Reply
from mailpost.smtp.transcript import Exchange, codes_of, content_of, events_of, feed

ENVELOPE = b"EHLO c.example\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<c@d.example>\r\n"
SPOOF = (
    b"MAIL FROM:<spoof@b.example>\r\nRCPT TO:<c@d.example>\r\nDATA\r\n"
    b"From: spoof@b.example\r\n\r\nspoofed\r\n.\r\n"
)


def state_of(proto: SMTPServerProtocol) -> State:
    """Read the state through a call, so that type narrowing does not stick across steps."""
    return proto.state


def in_transaction(**limits: int) -> SMTPServerProtocol:
    proto = SMTPServerProtocol(**limits)  # type: ignore[arg-type]
    proto.greeting(Reply.make(220, None, "ready"))
    assert codes_of(feed(proto, ENVELOPE)) == [250, 250, 250]
    return proto


def in_data(**limits: int) -> SMTPServerProtocol:
    proto = in_transaction(**limits)
    assert codes_of(feed(proto, b"DATA\r\n")) == [354]
    assert state_of(proto) is State.DATA
    return proto


def ends(exchanges: list[Exchange]) -> list[ev.Event]:
    return [e for e in events_of(exchanges) if not isinstance(e, ev.DataChunk)]


# --- DATA: end of data and transparency (RFC 5321 §4.1.1.4, §4.5.2) ---------------------------


def test_message_ends_at_crlf_dot_crlf() -> None:
    proto = in_data()
    exchanges = feed(proto, b"Subject: hi\r\n\r\nbody\r\n.\r\nNOOP\r\n")
    assert content_of(exchanges) == b"Subject: hi\r\n\r\nbody\r\n"
    assert ends(exchanges) == [ev.EndOfData(21, 0), ev.Noop()]
    assert codes_of(exchanges) == [250, 250]
    assert not proto.in_transaction


def test_dot_right_after_data_is_an_empty_message() -> None:
    """The CRLF that ends the DATA command is the first CRLF of <CRLF>.<CRLF>."""
    proto = in_data()
    exchanges = feed(proto, b".\r\n")
    assert events_of(exchanges) == [ev.EndOfData(0, 0)]


@pytest.mark.parametrize(
    ("wire", "content"),
    [
        (b"..\r\n", b".\r\n"),
        (b"..x\r\n", b".x\r\n"),
        (b"...\r\n", b"..\r\n"),
        (b". \r\n", b" \r\n"),
        (b"a\r\n..\r\n", b"a\r\n.\r\n"),
        (b"a.\r\n.b\r\n", b"a.\r\nb\r\n"),
    ],
)
def test_leading_dots_are_unstuffed(wire: bytes, content: bytes) -> None:
    exchanges = feed(in_data(), wire + b".\r\n")
    assert content_of(exchanges) == content
    assert ends(exchanges) == [ev.EndOfData(len(content), 0)]


def test_bare_cr_and_lf_are_normalised() -> None:
    exchanges = feed(in_data(), b"a\nb\rc\r\n\n\r\r\n.\r\n")
    assert content_of(exchanges) == b"a\r\nb\r\nc\r\n\r\n\r\n\r\n"


def test_cr_at_the_end_of_a_read_waits_for_the_next_byte() -> None:
    proto = in_data()
    first = feed(proto, b"abc\r")
    assert content_of(first) == b"abc"
    rest = feed(proto, b"\n.\r\n")
    assert content_of(rest) == b"\r\n"
    assert ends(rest) == [ev.EndOfData(5, 0)]


def test_content_is_handed_out_in_large_pieces() -> None:
    body = b"".join(b"line %d\r\n" % i for i in range(1000))
    exchanges = feed(in_data(), body + b".\r\n")
    chunks = [x.event for x in exchanges if isinstance(x.event, ev.DataChunk)]
    assert len(chunks) == 1
    assert content_of(exchanges) == body


def test_long_data_lines_are_not_buffered_whole() -> None:
    proto = in_data(max_line_length=1000)
    received = b""
    for _ in range(64):
        received += content_of(feed(proto, b"x" * 16384))
        assert proto.buffered == 0
    exchanges = feed(proto, b"\r\n.\r\n")
    assert received + content_of(exchanges) == b"x" * 16384 * 64 + b"\r\n"
    assert ends(exchanges) == [ev.EndOfData(16384 * 64 + 2, 0)]


def test_received_header_fields_are_counted_in_the_header_section_only() -> None:
    proto = in_data()
    message = (
        b"Received: from a\r\nreceived: from b\r\n\tcontinued\r\nRECEIVED:c\r\n"
        b"Subject: Received: no\r\n\r\nReceived: in the body\r\n"
    )
    half = len(message) // 3
    feed(proto, message[:half])
    exchanges = feed(proto, message[half:] + b".\r\n")
    assert ends(exchanges) == [ev.EndOfData(len(message), 3)]


# --- DATA: smuggling (security catalogue S1) --------------------------------------------------

SMUGGLING_VARIANTS = [
    b"\n.\n",
    b"\n.\r\n",
    b"\r.\r\n",
    b"\r.\n",
    b"\r.\r",
    b"\n.\r",
    b"\r\n.\n",
    b"\r\n.\r",
    b"\r\n.\r\r\n",
    b"\r\r\n.\r\r\n",
]


@pytest.mark.parametrize("variant", SMUGGLING_VARIANTS, ids=repr)
def test_smuggled_end_of_data_rejects_the_whole_message(variant: bytes) -> None:
    proto = in_data()
    exchanges = feed(proto, b"Subject: hi\r\n\r\nbody" + variant + SPOOF + b"NOOP\r\n")
    assert ends(exchanges) == [ev.Invalid(replies.SMUGGLING_REJECTED), ev.Noop()]
    assert codes_of(exchanges) == [550, 250]
    assert not any(isinstance(e, ev.MailFrom) for e in events_of(exchanges))
    assert b"spoof" not in content_of(exchanges), "nothing after the attempt is handed out"
    assert not proto.in_transaction


@pytest.mark.parametrize("variant", SMUGGLING_VARIANTS, ids=repr)
def test_smuggling_detection_does_not_depend_on_read_boundaries(variant: bytes) -> None:
    wire = b"body" + variant + SPOOF
    for cut in range(1, len(wire)):
        proto = in_data()
        exchanges = feed(proto, wire[:cut]) + feed(proto, wire[cut:])
        assert ends(exchanges) == [ev.Invalid(replies.SMUGGLING_REJECTED)], cut


def test_nul_before_the_dot_is_content_not_an_end() -> None:
    """``\\r\\n\\x00.\\r\\n``: not an end of data, so the "second" transaction is body text."""
    proto = in_data()
    exchanges = feed(proto, b"body\r\n\x00.\r\n" + SPOOF)
    assert ends(exchanges) == [ev.EndOfData(len(content_of(exchanges)), 0)]
    assert b"MAIL FROM:<spoof@b.example>\r\n" in content_of(exchanges)
    assert not any(isinstance(e, ev.MailFrom) for e in events_of(exchanges))


# --- DATA: size limit (RFC 1870; security catalogue S9) ---------------------------------------


def test_oversized_message_is_read_to_its_end_then_552() -> None:
    proto = in_data(max_message_size=100)
    exchanges = feed(proto, b"x" * 60 + b"\r\n" + b"y" * 500 + b"\r\n")
    assert len(content_of(exchanges)) == 100
    exchanges += feed(proto, b".\r\nNOOP\r\n")
    assert ends(exchanges) == [ev.Invalid(replies.MESSAGE_TOO_BIG), ev.Noop()]
    assert len(content_of(exchanges)) == 100
    assert not proto.in_transaction


def test_message_of_exactly_the_limit_is_accepted() -> None:
    exchanges = feed(in_data(max_message_size=10), b"12345678\r\n.\r\n")
    assert ends(exchanges) == [ev.EndOfData(10, 0)]


def test_refused_data_keeps_the_bytes_as_commands() -> None:
    proto = in_transaction()
    refuse = Reply.make(554, "5.5.0", "no")
    exchanges = feed(proto, b"DATA\r\nNOOP\r\n", lambda e: refuse if e == ev.Data() else replies.OK)
    assert events_of(exchanges) == [ev.Data(), ev.Noop()]
    assert proto.in_transaction


# --- BDAT (RFC 3030) --------------------------------------------------------------------------


def test_single_last_chunk() -> None:
    exchanges = feed(in_transaction(), b"BDAT 8 LAST\r\nhi\r\n..\r\n")
    assert events_of(exchanges) == [ev.DataChunk(b"hi\r\n..\r\n"), ev.EndOfData(8, 0)]


def test_chunks_are_acknowledged_one_by_one() -> None:
    proto = in_transaction()
    exchanges = feed(proto, b"BDAT 3\r\nabcBDAT 2 last\r\nde")
    assert events_of(exchanges) == [
        ev.DataChunk(b"abc"),
        ev.BdatChunkEnd(3),
        ev.DataChunk(b"de"),
        ev.EndOfData(5, 0),
    ]
    assert [x.wire[:3] for x in exchanges if x.reply] == [b"250", b"250"]
    assert not proto.in_transaction


def test_empty_last_chunk() -> None:
    proto = in_transaction()
    exchanges = feed(proto, b"BDAT 2\r\nhi") + feed(proto, b"BDAT 0 LAST\r\n")
    assert ends(exchanges) == [ev.BdatChunkEnd(2), ev.EndOfData(2, 0)]


def test_chunk_octets_arriving_in_pieces() -> None:
    proto = in_transaction()
    assert feed(proto, b"BDAT 10 LAST\r\n0123") == [Exchange(ev.DataChunk(b"0123"))]
    assert state_of(proto) is State.BDAT
    assert proto.next_event() is NEED_DATA
    exchanges = feed(proto, b"456789NOOP\r\n")
    assert events_of(exchanges) == [ev.DataChunk(b"456789"), ev.EndOfData(10, 0), ev.Noop()]


def test_bdat_normalises_line_ends_across_chunks_without_unstuffing() -> None:
    proto = in_transaction()
    exchanges = feed(proto, b"BDAT 6\r\n..a\nb\r") + feed(proto, b"BDAT 3 LAST\r\n\nc\r")
    assert content_of(exchanges) == b"..a\r\nb\r\nc\r\n"
    assert ends(exchanges)[-1] == ev.EndOfData(11, 0)


def test_bdat_without_a_transaction_consumes_its_octets_then_503() -> None:
    proto = SMTPServerProtocol()
    proto.greeting(Reply.make(220, None, "ready"))
    feed(proto, b"EHLO c.example\r\n")
    exchanges = feed(proto, b"BDAT 12\r\nQUIT\r\nQUIT\r\nNOOP\r\n")
    assert events_of(exchanges) == [ev.Invalid(replies.NEED_MAIL), ev.Noop()]
    feed(proto, b"MAIL FROM:<a@b.example>\r\n")
    exchanges = feed(proto, b"BDAT 4 LAST\r\nRSETNOOP\r\n")
    assert events_of(exchanges) == [ev.Invalid(replies.NEED_RCPT), ev.Noop()]


@pytest.mark.parametrize("argument", [b"", b" abc", b" 5 FIRST", b" -1", b" 123456789012345678901"])
def test_bdat_syntax_errors(argument: bytes) -> None:
    exchanges = feed(in_transaction(), b"BDAT" + argument + b"\r\n")
    assert codes_of(exchanges) == [501]


def test_data_after_bdat_and_rcpt_after_bdat_are_bad_sequences() -> None:
    proto = in_transaction()
    feed(proto, b"BDAT 1\r\nx")
    exchanges = feed(proto, b"DATA\r\nRCPT TO:<e@f.example>\r\n")
    assert events_of(exchanges) == [
        ev.Invalid(replies.DATA_AFTER_BDAT),
        ev.Invalid(replies.BAD_SEQUENCE),
    ]


def test_refused_chunk_fails_the_transaction_until_rset() -> None:
    proto = in_transaction()
    full = Reply.make(452, "4.3.1", "disk full")
    feed(proto, b"BDAT 2\r\nab", lambda e: full)
    assert proto.in_transaction
    exchanges = feed(proto, b"BDAT 3 LAST\r\ncdeDATA\r\n")
    assert events_of(exchanges) == [
        ev.Invalid(replies.RSET_REQUIRED),
        ev.Invalid(replies.RSET_REQUIRED),
    ]
    feed(proto, b"RSET\r\n")
    assert not proto.in_transaction


def test_oversized_chunks_are_consumed_then_552() -> None:
    proto = in_transaction(max_message_size=10)
    exchanges = feed(proto, b"BDAT 20\r\n" + b"z" * 20)
    assert content_of(exchanges) == b"z" * 10
    assert ends(exchanges) == [ev.Invalid(replies.MESSAGE_TOO_BIG)]
    assert proto.in_transaction, "a failed non-LAST chunk leaves a failed transaction"
    exchanges = feed(proto, b"BDAT 1 LAST\r\nzNOOP\r\n")
    assert ends(exchanges) == [ev.Invalid(replies.RSET_REQUIRED), ev.Noop()]


def test_oversized_last_chunk_ends_the_transaction() -> None:
    proto = in_transaction(max_message_size=10)
    exchanges = feed(proto, b"BDAT 11 LAST\r\n" + b"z" * 11)
    assert ends(exchanges) == [ev.Invalid(replies.MESSAGE_TOO_BIG)]
    assert not proto.in_transaction


def test_absurd_chunk_size_is_consumed_without_buffering() -> None:
    proto = in_transaction(max_message_size=1000)
    feed(proto, b"BDAT 99999999999 LAST\r\n")
    handed_out = 0
    for _ in range(50):
        handed_out += len(content_of(feed(proto, b"q" * 65536)))
        assert proto.buffered == 0
        assert state_of(proto) is State.BDAT
    assert handed_out == 1000
