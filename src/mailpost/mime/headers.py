"""Header blocks: where they end, which fields they hold, and their values.

Theory of operation
-------------------
The parser needs offsets, which :mod:`email` does not give, so the header block is delimited
here: it runs from the start of an entity to its first empty line (RFC 5322 §2.1: "The body
... is separated from the header section by an empty line"). Lines normally end in CRLF, but a
bare LF is tolerated as a line end everywhere, since stored messages may have been damaged.

Fields are never split one by one in Python: a compiled regex, anchored at line starts,
finds only the fields a caller asks for (``^(?:name|name...)[ \\t]*:``), so a 10 MB header line
or 50,000 unrelated fields cost one pass of the regex engine (security catalogue M2). The
obsolete syntax of RFC 5322 §4.5 allows white space before the colon, hence ``[ \\t]*``.

Bounds: a value is cut at :data:`MAX_VALUE` octets before anything else looks at it, and at most
:data:`MAX_MATCHES` matching fields are examined per block; the first occurrence of a field wins
(RFC 5322 §3.6 allows one of each of the fields we read). Unfolding (RFC 5322 §2.2.3) removes
the CRLF of every fold and keeps the white space after it.

:func:`decode_words` is the one place that decodes RFC 2047 encoded words, with the stdlib's
:func:`email.header.decode_header`; it is a helper for consumers such as SEARCH. BODYSTRUCTURE
and ENVELOPE never decode (RFC 3516 §5 and RFC 9051 §7.5.2 report header text as written).
"""

from __future__ import annotations

import codecs
import re
from collections.abc import Iterable
from email.header import decode_header

# CPython's email package is quadratic on some long header values (gh-136063); every value is
# cut to this many octets before it reaches it, or any other parser.
MAX_VALUE = 64 * 1024
# How many matching fields of one header block are looked at; later ones are ignored.
MAX_MATCHES = 5000

_BLANK_LINE = re.compile(rb"\n(\r?\n)")
_FOLD = re.compile(rb"\r?\n")
_FIELD_END = re.compile(rb"\n(?![ \t])")
_WSP = b" \t\r\n"

# Codecs that are text encodings to Python but not charsets any mailer means: decoding
# attacker-chosen octets with them is at best pointless (punycode is also slow on long input).
_REFUSED_CODECS = frozenset({"punycode", "idna", "unicode-escape", "raw-unicode-escape",
                             "undefined"})


def find_header_end(data: bytes, start: int, limit: int) -> tuple[int, int] | None:
    """Locate the empty line ending the header that starts at ``start``.

    Only ``data[start:limit]`` is searched. Returns ``(header_end, body_start)``: the offset of
    the empty line and the offset just after it; None when there is no empty line.
    """
    if data.startswith(b"\r\n", start) and start + 2 <= limit:
        return start, start + 2
    if data.startswith(b"\n", start) and start + 1 <= limit:
        return start, start + 1
    match = _BLANK_LINE.search(data, start, limit)
    if match is None:
        return None
    return match.start() + 1, match.end()


def field_pattern(names: Iterable[bytes]) -> re.Pattern[bytes]:
    """A pattern finding, at line starts, the fields named ``names`` (ASCII case-insensitive)."""
    alternatives = b"|".join(re.escape(name) for name in names)
    return re.compile(rb"^(" + alternatives + rb")[ \t]*:", re.MULTILINE | re.IGNORECASE)


def unfold(raw: bytes) -> bytes:
    """Unfold a field value (RFC 5322 §2.2.3) and trim the white space around it."""
    return _FOLD.sub(b"", raw).strip(_WSP)


def first_values(data: bytes, start: int, end: int,
                 pattern: re.Pattern[bytes]) -> dict[bytes, bytes]:
    """Unfolded values of the first occurrence of each field ``pattern`` finds.

    ``data[start:end]`` is the header block without its empty line; keys are lowercased names.
    """
    found: dict[bytes, bytes] = {}
    for count, match in enumerate(pattern.finditer(data, start, end)):
        if count >= MAX_MATCHES:
            break
        name = match.group(1).lower()
        if name in found:
            continue
        value_start = match.end()
        stop = min(end, value_start + MAX_VALUE)
        field_end = _FIELD_END.search(data, value_start, stop)
        value_end = stop if field_end is None else field_end.start()
        found[name] = unfold(data[value_start:value_end])
    return found


def text(raw: bytes) -> str:
    """Header octets as the package's text form: UTF-8, other octets as lone surrogates."""
    return raw.decode("utf-8", "surrogateescape")


def text_codec(label: str) -> str | None:
    """The Python codec for a MIME charset label, or None when unknown or not a text charset."""
    if not label or len(label) > 64 or not label.isascii():
        return None
    candidates = [label]
    if label.lower().startswith("x-"):
        candidates.append(label[2:])
    for candidate in candidates:
        try:
            name = codecs.lookup(candidate).name
            # LookupError for bytes-to-bytes codecs such as zlib or base64; the input must not
            # be empty, since decoding nothing succeeds without looking at the codec.
            b"x".decode(name, "replace")
        except (LookupError, ValueError, TypeError):
            continue
        if name in _REFUSED_CODECS:
            return None
        return name
    return None


def decode_words(value: str | bytes) -> str:
    """Decode the RFC 2047 encoded words of a header value into text, never raising.

    Octets outside encoded words are read as UTF-8 (RFC 6532), replacing what is malformed;
    an encoded word in an unknown charset is read as UTF-8 too.
    """
    raw = value if isinstance(value, bytes) else value.encode("utf-8", "surrogateescape")
    # Latin-1 maps octets to code points one to one, so decode_header hands the unencoded
    # stretches back as the original octets.
    as_latin1 = unfold(raw[:MAX_VALUE]).decode("latin-1")
    try:
        chunks = decode_header(as_latin1)
    except Exception:  # noqa: BLE001 -- the stdlib parser on hostile input: use the raw text
        return raw.decode("utf-8", "replace")
    pieces = []
    for chunk, charset in chunks:
        octets = chunk.encode("latin-1", "replace") if isinstance(chunk, str) else chunk
        codec = text_codec(charset) if charset else None
        pieces.append(octets.decode(codec or "utf-8", "replace"))
    return "".join(pieces)
