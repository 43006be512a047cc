"""Mailbox names and the arguments of the mailbox commands (SELECT, CREATE, LIST, STATUS).

Theory of operation
-------------------
**Names.** A mailbox argument is an ``astring`` on the wire. How its octets become a name
depends on whether UTF-8 mode is on, which the protocol machine learns from the ENABLED
response (``IMAP4rev2`` per RFC 9051 §5.1, or ``UTF8=ACCEPT`` per RFC 6855 §3):

* UTF-8 mode: the octets must be well-formed UTF-8; the name is normalised to NFC, which
  RFC 9051 §5.1 allows provided every command does it (they all come through here), so
  ``SELECT`` finds what ``CREATE`` made;
* IMAP4rev1 mode: the octets must be printable US-ASCII in *canonical* modified UTF-7, which
  is decoded (RFC 9051 Appendix A.1; :mod:`mailpost.imap.mutf7`). 8-bit octets are BAD.

Either way the decoded name may not contain control characters, DEL, C1 controls or the
U+2028/U+2029 separators (RFC 6855 §3), so CR, LF and NUL can never reach the store or a log
line (security catalogue invariant 6 and I7). Every case variant of ``INBOX`` becomes
``"INBOX"`` (RFC 9051 §9, ``mailbox``). Names are never turned into paths here or anywhere.

**Options.** Unknown LIST selection or return options, select parameters, STATUS items and
CREATE parameters are BAD, as RFC 9051 §6.3.9 requires for LIST ("A server MUST respond to
options it does not recognize with a BAD response") and RFC 4466 implies for the others.
"""

from __future__ import annotations

import re
import unicodedata

from mailpost.imap import mutf7
from mailpost.imap.commands import (
    STATUS_ITEMS,
    Create,
    List,
    ListReturn,
    ListSelection,
    QResync,
    SelectBase,
    Status,
)
from mailpost.imap.cursor import Cursor, utf8
from mailpost.imap.errors import MUTF7Error, ParseError
from mailpost.imap.seqset import SequenceSet

_FORBIDDEN = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")
SPECIAL_USE = {
    name.upper(): name
    for name in ("\\All", "\\Archive", "\\Drafts", "\\Flagged", "\\Junk", "\\Sent", "\\Trash")
}
_USE_ATTR = re.compile(rb"\\[\x21\x23\x24\x26\x27\x2b-\x5b\x5e-\x7a\x7c-\x7e]+")


def decode_mailbox_name(raw: bytes, *, utf8_mode: bool) -> str:
    """Wire octets of a mailbox name (or LIST pattern) -> the Unicode name."""
    if utf8_mode:
        name = unicodedata.normalize("NFC", utf8(raw, "mailbox name"))
    else:
        if not raw.isascii():
            raise ParseError("8-bit mailbox name: use modified UTF-7 or ENABLE UTF8=ACCEPT")
        try:
            name = mutf7.decode(raw.decode("ascii"))
        except MUTF7Error as exc:
            raise ParseError(f"Invalid modified UTF-7 mailbox name: {exc}") from None
    if _FORBIDDEN.search(name):
        raise ParseError("Control characters are not allowed in mailbox names")
    return "INBOX" if name.upper() == "INBOX" else name


def mailbox(cur: Cursor, *, utf8_mode: bool) -> str:
    return decode_mailbox_name(cur.astring(), utf8_mode=utf8_mode)


# --- SELECT / EXAMINE (RFC 4466 select-params, RFC 7162) ----------------------------------


def select(cur: Cursor, cls: type[SelectBase], tag: str, *, utf8_mode: bool) -> SelectBase:
    cur.sp()
    name = mailbox(cur, utf8_mode=utf8_mode)
    condstore = False
    qresync: QResync | None = None
    if cur.accept(b" ("):
        while True:
            param = cur.keyword()
            if param == "CONDSTORE":
                condstore = True
            elif param == "QRESYNC" and qresync is None:
                cur.sp()
                qresync = _qresync(cur)
            else:
                raise ParseError(f"Unknown select parameter {param[:40]}")
            if cur.accept(b")"):
                break
            cur.sp()
    cur.expect_end()
    return cls(tag, name, condstore, qresync)


def _qresync(cur: Cursor) -> QResync:
    """``"(" uidvalidity SP mod-sequence-value [SP known-uids] [SP seq-match-data] ")"``."""
    cur.expect(b"(")
    uidvalidity = cur.number(nonzero=True)
    cur.sp()
    modseq = cur.number64(nonzero=True)
    known_uids: SequenceSet | None = None
    seq_match: tuple[SequenceSet | None, SequenceSet | None] = (None, None)
    if cur.accept(b" "):
        if cur.peek() != ord("("):
            known_uids = _star_free_set(cur)
            if cur.accept(b" "):
                seq_match = _seq_match_data(cur)
        else:
            seq_match = _seq_match_data(cur)
    cur.expect(b")")
    return QResync(uidvalidity, modseq, known_uids, *seq_match)


def _seq_match_data(cur: Cursor) -> tuple[SequenceSet | None, SequenceSet | None]:
    """``"(" known-sequence-set SP known-uid-set ")"``."""
    cur.expect(b"(")
    known_sequence_set = _star_free_set(cur)
    cur.sp()
    known_uid_set = _star_free_set(cur)
    cur.expect(b")")
    return known_sequence_set, known_uid_set


def _star_free_set(cur: Cursor) -> SequenceSet:
    """A sequence set where ``*`` and ``$`` are not allowed (RFC 7162 §7, known-uids)."""
    parsed = cur.sequence_set()
    if parsed.uses_star or parsed.saved:
        raise ParseError("'*' and '$' are not allowed here")
    return parsed


# --- CREATE (RFC 4466 create-params, RFC 6154 USE) ----------------------------------------


def create(cur: Cursor, tag: str, *, utf8_mode: bool) -> Create:
    cur.sp()
    name = mailbox(cur, utf8_mode=utf8_mode)
    uses: list[str] = []
    if cur.accept(b" ("):
        if cur.keyword() != "USE":
            raise ParseError("Unknown CREATE parameter")
        cur.sp()
        cur.expect(b"(")
        while not cur.accept(b")"):
            if uses:
                cur.sp()
            uses.append(_use_attr(cur))
        cur.expect(b")")
    cur.expect_end()
    return Create(tag, name, tuple(dict.fromkeys(uses)))


def _use_attr(cur: Cursor) -> str:
    found = cur.match(_USE_ATTR)
    if found is None:
        raise ParseError("Expected a special-use attribute")
    text = found.group().decode("ascii")
    return SPECIAL_USE.get(text.upper(), text)


# --- STATUS --------------------------------------------------------------------------------


def status(cur: Cursor, tag: str, *, utf8_mode: bool) -> Status:
    cur.sp()
    name = mailbox(cur, utf8_mode=utf8_mode)
    cur.sp()
    items = status_items(cur)
    cur.expect_end()
    return Status(tag, name, items)


def status_items(cur: Cursor) -> tuple[str, ...]:
    """``"(" status-att *(SP status-att) ")"``; unknown items are BAD."""
    cur.expect(b"(")
    items = [_status_item(cur)]
    while not cur.accept(b")"):
        cur.sp()
        items.append(_status_item(cur))
    return tuple(dict.fromkeys(items))


def _status_item(cur: Cursor) -> str:
    item = cur.keyword()
    if item not in STATUS_ITEMS:
        raise ParseError(f"Unknown STATUS item {item[:40]}")
    return item


# --- LIST (RFC 9051 §6.3.9, RFC 5258, RFC 5819, RFC 6154) ---------------------------------


def list_command(cur: Cursor, tag: str, *, utf8_mode: bool) -> List:
    cur.sp()
    extended = False
    selection = ListSelection()
    if cur.peek() == ord("("):
        selection = _selection_options(cur)
        extended = True
        cur.sp()
    reference = mailbox(cur, utf8_mode=utf8_mode)
    cur.sp()
    if cur.peek() == ord("("):
        patterns = _pattern_list(cur, utf8_mode)
        extended = True
    else:
        patterns = (decode_mailbox_name(cur.list_mailbox(), utf8_mode=utf8_mode),)
    returns = ListReturn()
    if cur.accept(b" "):
        if cur.keyword() != "RETURN":
            raise ParseError("Expected RETURN")
        cur.sp()
        returns = _return_options(cur)
        extended = True
    cur.expect_end()
    return List(tag, reference, patterns, selection, returns, extended)


def _pattern_list(cur: Cursor, utf8_mode: bool) -> tuple[str, ...]:
    cur.expect(b"(")
    patterns = [decode_mailbox_name(cur.list_mailbox(), utf8_mode=utf8_mode)]
    while not cur.accept(b")"):
        cur.sp()
        patterns.append(decode_mailbox_name(cur.list_mailbox(), utf8_mode=utf8_mode))
    return tuple(patterns)


def _selection_options(cur: Cursor) -> ListSelection:
    options = _option_words(cur)
    unknown = options - {"SUBSCRIBED", "REMOTE", "RECURSIVEMATCH", "SPECIAL-USE"}
    if unknown:
        raise ParseError(f"Unknown LIST selection option {min(unknown)[:40]}")
    # RFC 9051 §9 list-select-opts: RECURSIVEMATCH needs a base option (SUBSCRIBED).
    if "RECURSIVEMATCH" in options and "SUBSCRIBED" not in options:
        raise ParseError("RECURSIVEMATCH needs SUBSCRIBED")
    return ListSelection(
        subscribed="SUBSCRIBED" in options,
        remote="REMOTE" in options,
        recursive_match="RECURSIVEMATCH" in options,
        special_use="SPECIAL-USE" in options,
    )


def _option_words(cur: Cursor) -> set[str]:
    cur.expect(b"(")
    words: set[str] = set()
    while not cur.accept(b")"):
        if words:
            cur.sp()
        words.add(cur.keyword())
    return words


def _return_options(cur: Cursor) -> ListReturn:
    cur.expect(b"(")
    words: set[str] = set()
    status_wanted: tuple[str, ...] | None = None
    first = True
    while not cur.accept(b")"):
        if not first:
            cur.sp()
        first = False
        word = cur.keyword()
        if word == "STATUS":
            cur.sp()
            status_wanted = status_items(cur)
        elif word in ("SUBSCRIBED", "CHILDREN", "SPECIAL-USE"):
            words.add(word)
        else:
            raise ParseError(f"Unknown LIST return option {word[:40]}")
    return ListReturn(
        subscribed="SUBSCRIBED" in words,
        children="CHILDREN" in words,
        special_use="SPECIAL-USE" in words,
        status=status_wanted,
    )
