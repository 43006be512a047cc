"""BODY and TEXT matching (RFC 9051 §6.4.4): the searchable text of a stored message.

Theory of operation
-------------------
These functions are plain, blocking and CPU-bound; the evaluator calls them in a worker thread
for a batch of bodies at a time, so a large mailbox never stalls the event loop.

"[MIME-IMB] content transfer encodings and [MIME-HDRS] strings in [RFC5322]/[MIME-IMB] headers
MUST be decoded before comparing text" (RFC 9051 §6.4.4). So the message is parsed into its MIME
tree (:func:`mailpost.mime.parse_message`) and its *searchable text* is assembled from:

* every ``text/*`` leaf, with its Content-Transfer-Encoding removed
  (:func:`mailpost.mime.binary`) and its charset decoded (unknown charsets and stray 8-bit
  octets are read as UTF-8 with replacement characters);
* the header of every encapsulated message (``message/rfc822`` parts are part of the body),
  RFC 2047-decoded.

For ``text/html`` both the source and its visible text (tags dropped, character references
such as ``&eacute;`` resolved) are searched: a user looks for what the message shows, but may
also look for a link.

Other leaves (images, PDFs, ``application/*``) are skipped: "Server implementations MAY exclude
[MIME-IMB] body parts with terminal content media types other than TEXT and MESSAGE from
consideration in SEARCH matching", and matching a word against the base64 of a photo only
produces noise. A part whose transfer encoding is unknown is searched as written.

``TEXT`` is the top-level header (decoded, as in :attr:`HeaderInfo.text`) plus the body text.
Matching is substring after Unicode case folding, which includes the case-insensitivity for
ASCII that §6.4.4 asks for.
"""

from __future__ import annotations

import html
import re
from collections.abc import Sequence
from dataclasses import dataclass

from mailpost.imap.handlers.search_headers import HeaderInfo
from mailpost.mime import Part, UnknownTransferEncoding, binary, parse_message
from mailpost.mime.headers import text_codec

_TAG = re.compile(r"<[^<>]*>")
_BLANKS = re.compile(r"\s+")


@dataclass(frozen=True, slots=True)
class TextNeedle:
    """One BODY/TEXT key, its string already case-folded."""

    in_header: bool
    folded: str


def needle(where: str, value: str) -> TextNeedle:
    return TextNeedle(where == "TEXT", value.casefold())


def matches_all(data: bytes | None, needles: Sequence[TextNeedle]) -> bool:
    """True when every needle is found in the message ``data`` (None: body gone)."""
    if data is None:
        return False
    root = parse_message(data)
    body = body_text(data, root).casefold()
    header: str | None = None
    for item in needles:
        if item.folded in body:
            continue
        if not item.in_header:
            return False
        if header is None:
            header = HeaderInfo(data[root.start:root.header_end]).text.casefold()
        if item.folded not in header:
            return False
    return True


def body_text(data: bytes, root: Part) -> str:
    """The searchable text of the body (see the module docstring), pieces joined by LF."""
    pieces: list[str] = []
    stack: list[tuple[Part, bool]] = [(root, False)]
    while stack:
        part, encapsulated = stack.pop()
        if encapsulated:
            header = HeaderInfo(data[part.start:part.header_end])
            pieces.append(header.text)
        if part.is_leaf and part.media_type == "text" and not part.opaque:
            text = _part_text(data, part)
            pieces.append(text)
            if part.subtype == "html":
                pieces.append(visible_text(text))
        inner = part.is_message
        stack.extend((child, inner) for child in reversed(part.children))
    return "\n".join(pieces)


def _part_text(data: bytes, part: Part) -> str:
    try:
        octets = binary(data, part)
    except UnknownTransferEncoding:
        octets = data[part.body_start:part.end]
    codec = text_codec(part.param("charset") or "utf-8") or "utf-8"
    if codec == "ascii":  # mislabelled 8-bit text is common; UTF-8 reads ASCII the same
        codec = "utf-8"
    try:
        return octets.decode(codec, "replace")
    except (LookupError, ValueError):  # a codec that refuses "replace" on this input
        return octets.decode("utf-8", "replace")


def visible_text(source: str) -> str:
    """What an HTML part shows: tags dropped, character references resolved, blanks joined."""
    return _BLANKS.sub(" ", html.unescape(_TAG.sub(" ", source)))
