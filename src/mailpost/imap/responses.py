"""Server responses: the typed responses that drive the protocol machine, and small helpers
that render untagged data (RFC 9051 §7 and the extensions' response grammars).

Theory of operation
-------------------
Two layers:

1. **Typed responses that change state** go through
   :meth:`~mailpost.imap.protocol.IMAPServerProtocol.send`: :class:`Tagged` completions,
   :class:`Untagged` status responses (``* OK [UIDVALIDITY 5]``, ``* BAD``, ``* PREAUTH``),
   :class:`Bye`, :class:`Continuation` and :class:`Enabled`. The machine needs to see these:
   a tagged OK to STARTTLS ends plaintext, a continuation to IDLE starts waiting for DONE,
   ``* ENABLED UTF8=ACCEPT`` switches mailbox names to UTF-8.
2. **Untagged data** (EXISTS, FETCH, LIST, STATUS, ESEARCH, ...) never changes the machine's
   state, so the helpers below just return complete wire lines (``bytes`` ending in CRLF)
   that the session writes directly. Large FETCH bodies are streamed by the session: write
   ``fetch_start(msn)`` + items + ``literal_header(n)``, then the ``n`` octets from the blob
   store, then the rest of the items and ``b")\\r\\n"``.

Quoting (RFC 9051 §4.3): :func:`string` writes a quoted string when it can - no CR, LF or
NUL, and only US-ASCII unless UTF-8 output is allowed (RFC 9051 Appendix A: no UTF-8 in
quoted strings before ``ENABLE IMAP4rev2``/``UTF8=ACCEPT``) - and otherwise a synchronising
literal ``{n}`` (a server never sends ``{n+}``, RFC 7888 §3). Mailbox names are written in
modified UTF-7 unless UTF-8 output is allowed (:func:`mailbox_name`).

Human-readable text can never break the framing: CR, LF and NUL become spaces, non-ASCII
becomes ``?`` unless UTF-8 is allowed (RFC 9051 §9 ``text``), and a text that would start
with ``[`` is shielded so it is not read as a response code. Response codes are checked
(no ``]``, CR, LF or NUL) and a bad one is a :class:`~mailpost.imap.errors.LocalProtocolError`.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from mailpost.imap import mutf7
from mailpost.imap.cursor import ASTRING_ATOM
from mailpost.imap.errors import LocalProtocolError
from mailpost.imap.seqset import IntervalSet, SequenceSet

CRLF = b"\r\n"
_TEXT_UNSAFE = re.compile("[\x00\r\n]")
_CODE_UNSAFE = re.compile("[\x00\r\n\\]]")


def _text(text: str, utf8: bool) -> bytes:
    clean = _TEXT_UNSAFE.sub(" ", text)
    if clean.startswith("["):
        clean = " " + clean  # RFC 9051 §9 resp-text: a leading "[" would open a code
    if not utf8:
        return clean.encode("ascii", "replace")
    return clean.encode("utf-8", "replace")


def _resp_text(text: str, code: str | None, utf8: bool) -> bytes:
    if code is None:
        return _text(text or "Completed", utf8)
    if not code or _CODE_UNSAFE.search(code):
        raise LocalProtocolError(f"invalid response code {code!r}")
    return b"[" + code.encode("utf-8") + b"] " + _text(text or "Completed", utf8)


@dataclass(frozen=True, slots=True)
class Tagged:
    """``tag OK|NO|BAD [code] text``: completes the command ``tag``."""

    tag: str
    status: str
    text: str = ""
    code: str | None = None

    def __post_init__(self) -> None:
        if self.status not in ("OK", "NO", "BAD"):
            raise LocalProtocolError(f"{self.status} is not a tagged status")

    def to_bytes(self, *, utf8: bool = False) -> bytes:
        tag = self.tag.encode("ascii")
        return tag + b" " + self.status.encode() + b" " + _resp_text(self.text, self.code, utf8) + CRLF


@dataclass(frozen=True, slots=True)
class Untagged:
    """``* OK|NO|BAD|PREAUTH [code] text`` (RFC 9051 §7.1)."""

    status: str
    text: str = ""
    code: str | None = None

    def __post_init__(self) -> None:
        if self.status not in ("OK", "NO", "BAD", "PREAUTH"):
            raise LocalProtocolError(f"{self.status} is not an untagged status (BYE: use Bye)")

    def to_bytes(self, *, utf8: bool = False) -> bytes:
        return b"* " + self.status.encode() + b" " + _resp_text(self.text, self.code, utf8) + CRLF


@dataclass(frozen=True, slots=True)
class Bye:
    """``* BYE [code] text``: the server closes the connection (RFC 9051 §7.1.5)."""

    text: str = ""
    code: str | None = None

    def to_bytes(self, *, utf8: bool = False) -> bytes:
        return b"* BYE " + _resp_text(self.text or "Logging out", self.code, utf8) + CRLF


@dataclass(frozen=True, slots=True)
class Continuation:
    """``+ text`` (literal, IDLE) or ``+ base64`` (an AUTHENTICATE challenge, ``data``)."""

    text: str = ""
    data: bytes | None = field(default=None, repr=False)

    def to_bytes(self, *, utf8: bool = False) -> bytes:
        if self.data is not None:
            return b"+ " + base64.b64encode(self.data) + CRLF
        return b"+ " + _text(self.text, utf8) + CRLF


@dataclass(frozen=True, slots=True)
class Enabled:
    """``* ENABLED cap...`` (RFC 5161 §3.2); list only what was enabled by this command."""

    capabilities: tuple[str, ...] = ()

    def to_bytes(self, *, utf8: bool = False) -> bytes:
        names = "".join(" " + _atom_text(name) for name in self.capabilities)
        return b"* ENABLED" + names.encode("ascii") + CRLF


Response = Tagged | Untagged | Bye | Continuation | Enabled


def _atom_text(name: str) -> str:
    if not name or not ASTRING_ATOM.fullmatch(name.encode("ascii", "replace")):
        raise LocalProtocolError(f"not an atom: {name!r}")
    return name


# --- strings ---------------------------------------------------------------------------------


def literal_header(size: int, *, binary: bool = False) -> bytes:
    """``{size}\\r\\n`` (or ``~{size}\\r\\n`` for BINARY fetch data, RFC 3516 §4.3)."""
    return (b"~{%d}" if binary else b"{%d}") % size + CRLF


def literal(data: bytes, *, binary: bool = False) -> bytes:
    return literal_header(len(data), binary=binary) + data


def string(value: str | bytes, *, utf8: bool = False) -> bytes:
    """A quoted string when allowed (see the module docstring), else a literal."""
    raw = value.encode("utf-8") if isinstance(value, str) else value
    if b"\r" in raw or b"\n" in raw or b"\x00" in raw or len(raw) > 1024:
        return literal(raw)
    if not raw.isascii() and not (utf8 and _is_utf8(raw)):
        return literal(raw)
    return b'"' + raw.replace(b"\\", b"\\\\").replace(b'"', b'\\"') + b'"'


def nstring(value: str | bytes | None, *, utf8: bool = False) -> bytes:
    return b"NIL" if value is None else string(value, utf8=utf8)


def astring(value: str | bytes, *, utf8: bool = False) -> bytes:
    """An atom when every octet is an ASTRING-CHAR (and it is not ``NIL``), else a string."""
    raw = value.encode("utf-8") if isinstance(value, str) else value
    if raw and ASTRING_ATOM.fullmatch(raw) and raw.upper() != b"NIL":
        return raw
    return string(raw, utf8=utf8)


def mailbox_name(name: str, *, utf8: bool = False) -> bytes:
    """A mailbox name: modified UTF-7 unless UTF-8 output is allowed (RFC 9051 App. A.1)."""
    if name.upper() == "INBOX":
        return b"INBOX"
    return astring(name if utf8 else mutf7.encode(name), utf8=utf8)


def _is_utf8(raw: bytes) -> bool:
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def paren_list(items: Iterable[bytes]) -> bytes:
    return b"(" + b" ".join(items) + b")"


def flag_list(flags: Iterable[str]) -> bytes:
    return paren_list(flag.encode("ascii") for flag in flags)


def uid_list(uids: Sequence[int]) -> str:
    """Compress ``uids`` into ``a:b`` runs *in the given order* (COPYUID pairs the source and
    destination sets by position, RFC 4315 §3, so they must not be re-sorted)."""
    runs: list[list[int]] = []
    for uid in uids:
        if runs and uid == runs[-1][1] + 1:
            runs[-1][1] = uid
        else:
            runs.append([uid, uid])
    return ",".join(str(a) if a == b else f"{a}:{b}" for a, b in runs)


# --- response codes (RFC 9051 §7.1, RFC 4315, RFC 7162, RFC 5530) ---------------------------


def code_appenduid(uidvalidity: int, uids: Sequence[int]) -> str:
    return f"APPENDUID {uidvalidity} {uid_list(uids)}"


def code_copyuid(uidvalidity: int, source: Sequence[int], destination: Sequence[int]) -> str:
    return f"COPYUID {uidvalidity} {uid_list(source)} {uid_list(destination)}"


def code_permanentflags(flags: Iterable[str]) -> str:
    return "PERMANENTFLAGS " + flag_list(flags).decode("ascii")


def code_capability(capabilities: Iterable[str]) -> str:
    return "CAPABILITY " + " ".join(_atom_text(c) for c in capabilities)


# --- untagged data ---------------------------------------------------------------------------


def untagged(payload: bytes) -> bytes:
    """``* payload\\r\\n``. The helpers here only build payloads without bare CR or LF."""
    return b"* " + payload + CRLF


def capability(capabilities: Iterable[str]) -> bytes:
    return untagged(b"CAPABILITY " + " ".join(_atom_text(c) for c in capabilities).encode())


def exists(count: int) -> bytes:
    return untagged(b"%d EXISTS" % count)


def recent(count: int) -> bytes:
    return untagged(b"%d RECENT" % count)


def expunge(msn: int) -> bytes:
    return untagged(b"%d EXPUNGE" % msn)


def flags(flag_names: Iterable[str]) -> bytes:
    return untagged(b"FLAGS " + flag_list(flag_names))


def vanished(uids: IntervalSet | SequenceSet, *, earlier: bool = False) -> bytes:
    """``* VANISHED [(EARLIER)] uids`` (RFC 7162 §3.2.10)."""
    prefix = b"VANISHED (EARLIER) " if earlier else b"VANISHED "
    return untagged(prefix + str(uids).encode("ascii"))


def search(numbers: Iterable[int], *, modseq: int | None = None) -> bytes:
    """The IMAP4rev1 ``* SEARCH`` response, with ``(MODSEQ n)`` for CONDSTORE (RFC 7162)."""
    text = b"SEARCH" + b"".join(b" %d" % n for n in numbers)
    if modseq is not None:
        text += b" (MODSEQ %d)" % modseq
    return untagged(text)


def sort(numbers: Iterable[int], *, modseq: int | None = None) -> bytes:
    """``* SORT ...`` (RFC 5256 §4, with RFC 7162's ``(MODSEQ n)``)."""
    return b"* SORT" + search(numbers, modseq=modseq)[len(b"* SEARCH") :]


@dataclass(frozen=True, slots=True)
class ThreadNode:
    """A message in a THREAD response and the messages that reply to it. ``number`` 0 is a
    dummy parent (a missing message whose replies are siblings, RFC 5256 §4)."""

    number: int
    children: tuple[ThreadNode, ...] = ()


def thread(threads: Sequence[ThreadNode]) -> bytes:
    """``* THREAD (2)(3 6 (4 23)(44 7 96))`` (RFC 5256 §4); iterative, so any depth works."""
    out: list[bytes] = []
    for root in threads:
        out.append(b"(")
        stack: list[ThreadNode | bytes] = [root]
        while stack:
            item = stack.pop()
            if isinstance(item, bytes):
                out.append(item)
            else:
                _thread_node(item, out, stack)
        out.append(b")")
    return untagged(b"THREAD" + (b" " + b"".join(out) if out else b""))


def _thread_node(node: ThreadNode, out: list[bytes], stack: list[ThreadNode | bytes]) -> None:
    if node.number:
        out.append(b"%d" % node.number)
    if len(node.children) == 1 and node.number:
        stack.extend((node.children[0], b" "))
        return
    # thread-members SP thread-nested: a space before the first nested list only.
    for position, child in reversed(list(enumerate(node.children))):
        opener = b" (" if position == 0 and node.number else b"("
        stack.extend((b")", child, opener))


def esearch(
    *,
    tag: str | None = None,
    uid: bool = False,
    minimum: int | None = None,
    maximum: int | None = None,
    all: IntervalSet | SequenceSet | None = None,
    count: int | None = None,
    modseq: int | None = None,
) -> bytes:
    """``* ESEARCH (TAG "t") UID MIN 1 MAX 9 ALL 1:3,9 COUNT 4`` (RFC 4731 §3.1, RFC 9051
    §7.3.4). Leave out the items that were not requested; an empty result has no ALL."""
    parts = [b"ESEARCH"]
    if tag is not None:
        parts.append(b"(TAG " + string(tag) + b")")
    if uid:
        parts.append(b"UID")
    for name, value in (("MIN", minimum), ("MAX", maximum)):
        if value is not None:
            parts.append(f"{name} {value}".encode())
    if all:
        parts.append(b"ALL " + str(all).encode("ascii"))
    if count is not None:
        parts.append(b"COUNT %d" % count)
    if modseq is not None:
        parts.append(b"MODSEQ %d" % modseq)
    return untagged(b" ".join(parts))


def list_response(
    attributes: Iterable[str],
    delimiter: str | None,
    name: str,
    *,
    utf8: bool = False,
    extended: Sequence[tuple[str, bytes]] = (),
) -> bytes:
    """``* LIST (attrs) "/" name [(ext-items)]`` (RFC 9051 §7.3.1); ``extended`` items are
    (tag, rendered value) pairs such as ``("CHILDINFO", b'("SUBSCRIBED")')``."""
    delim = b"NIL" if delimiter is None else string(delimiter)
    text = b"LIST " + flag_list(attributes) + b" " + delim + b" " + mailbox_name(name, utf8=utf8)
    if extended:
        items = (string(item) + b" " + value for item, value in extended)
        text += b" " + paren_list(items)
    return untagged(text)


def lsub_response(attributes: Iterable[str], delimiter: str | None, name: str) -> bytes:
    return b"* LSUB" + list_response(attributes, delimiter, name)[len(b"* LIST") :]


def status_response(
    name: str, items: Sequence[tuple[str, int | str | None]], *, utf8: bool = False
) -> bytes:
    """``* STATUS name (MESSAGES 3 UIDNEXT 9)``; a str value is rendered in parentheses
    (MAILBOXID, RFC 8474), None as NIL (APPENDLIMIT, RFC 7889)."""
    rendered = [
        item.encode() + b" " + _status_value(value) for item, value in items
    ]
    return untagged(b"STATUS " + mailbox_name(name, utf8=utf8) + b" " + paren_list(rendered))


def _status_value(value: int | str | None) -> bytes:
    if value is None:
        return b"NIL"
    if isinstance(value, str):
        return b"(" + value.encode("ascii") + b")"
    return b"%d" % value


NamespaceEntry = tuple[str, str | None]


def namespace(
    personal: Sequence[NamespaceEntry],
    other: Sequence[NamespaceEntry] = (),
    shared: Sequence[NamespaceEntry] = (),
    *,
    utf8: bool = False,
) -> bytes:
    """``* NAMESPACE (("" "/")) NIL NIL`` (RFC 9051 §7.3.2); entries are (prefix, delimiter)."""
    groups = [_namespace_group(group, utf8) for group in (personal, other, shared)]
    return untagged(b"NAMESPACE " + b" ".join(groups))


def _namespace_group(entries: Sequence[NamespaceEntry], utf8: bool) -> bytes:
    if not entries:
        return b"NIL"
    rendered = (
        b"(" + string(prefix if utf8 else mutf7.encode(prefix), utf8=utf8) + b" "
        + (b"NIL" if delim is None else string(delim)) + b")"
        for prefix, delim in entries
    )
    return b"(" + b"".join(rendered) + b")"


def id_response(params: Sequence[tuple[str, str | None]] | None) -> bytes:
    """``* ID ("name" "mailpost")`` or ``* ID NIL`` (RFC 2971 §3.2)."""
    if params is None:
        return untagged(b"ID NIL")
    items = (string(key) + b" " + nstring(value) for key, value in params)
    return untagged(b"ID " + paren_list(items))


def quota(root: str, resources: Sequence[tuple[str, int, int]]) -> bytes:
    """``* QUOTA root (STORAGE 10 512)``: (resource, usage, limit) triples (RFC 9208 §5.1)."""
    items = (b"%s %d %d" % (name.encode("ascii"), used, limit) for name, used, limit in resources)
    return untagged(b"QUOTA " + astring(root) + b" " + paren_list(items))


def quotaroot(name: str, roots: Sequence[str], *, utf8: bool = False) -> bytes:
    text = b"QUOTAROOT " + mailbox_name(name, utf8=utf8)
    return untagged(text + b"".join(b" " + astring(root) for root in roots))


def fetch_start(msn: int) -> bytes:
    """``* msn FETCH (`` - follow with items joined by SP, then ``b")\\r\\n"``."""
    return b"* %d FETCH (" % msn


def fetch(msn: int, items: Sequence[tuple[str, bytes]]) -> bytes:
    """A whole ``* msn FETCH (NAME value ...)`` line from rendered item values."""
    body = b" ".join(name.encode("utf-8") + b" " + value for name, value in items)
    return fetch_start(msn) + body + b")" + CRLF
