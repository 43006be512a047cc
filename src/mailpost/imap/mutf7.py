"""Modified UTF-7 for IMAP4rev1 mailbox names (RFC 3501 §5.1.3, RFC 9051 Appendix A.1).

Theory of operation
-------------------
Printable US-ASCII (0x20-0x7e) stands for itself except ``&``, which is written ``&-``.
Every other run of characters is written as ``&`` + modified base64 of its UTF-16BE form +
``-``, where modified base64 uses ``,`` instead of ``/`` and has no ``=`` padding.

:func:`encode` produces the one canonical form. :func:`decode` accepts *only* canonical
input: RFC 9051 Appendix A.1 forbids superfluous shifts (``&U,BTFw-&ZeVnLIqe-``), base64 for
characters that can represent themselves (``&AGEAYgBj-`` for ``abc``), unterminated shifts
(``&Jjo!``) and characters outside the modified base64 alphabet. Rather than enumerating
every non-canonical shape, :func:`decode` decodes leniently-but-safely and then checks
``encode(result) == input``: two encodings of one name cannot both pass, so two different
wire names can never reach the same mailbox (security catalogue I7).

Errors raise :class:`~mailpost.imap.errors.MUTF7Error` (a ``ValueError``).
"""

from __future__ import annotations

import base64
import binascii
import re

from mailpost.imap.errors import MUTF7Error

_PRINTABLE_RUN = re.compile(r"[\x20-\x25\x27-\x7e]+")
_BASE64_SEGMENT = re.compile(r"[A-Za-z0-9+,]*")


def encode(name: str) -> str:
    """Encode ``name`` in canonical modified UTF-7; raise ``MUTF7Error`` for lone surrogates."""
    out: list[str] = []
    pos = 0
    while pos < len(name):
        match = _PRINTABLE_RUN.match(name, pos)
        if match:
            out.append(match.group())
            pos = match.end()
        elif name[pos] == "&":
            out.append("&-")
            pos += 1
        else:
            end = _end_of_shifted_run(name, pos)
            out.append("&" + _b64_encode(name[pos:end]) + "-")
            pos = end
    return "".join(out)


def _end_of_shifted_run(name: str, pos: int) -> int:
    """Characters from ``pos`` up to the next one that represents itself (including ``&``)."""
    end = pos
    while end < len(name) and not ("\x20" <= name[end] <= "\x7e"):
        end += 1
    return end


def _b64_encode(text: str) -> str:
    try:
        raw = text.encode("utf-16-be")
    except UnicodeEncodeError as exc:
        raise MUTF7Error("lone surrogate cannot be encoded") from exc
    return base64.b64encode(raw).decode("ascii").rstrip("=").replace("/", ",")


def decode(wire: str) -> str:
    """Decode canonical modified UTF-7; anything else raises ``MUTF7Error``."""
    if not _is_printable_ascii(wire):
        raise MUTF7Error("modified UTF-7 names are printable US-ASCII")
    out: list[str] = []
    pos = 0
    while pos < len(wire):
        amp = wire.find("&", pos)
        if amp < 0:
            out.append(wire[pos:])
            break
        out.append(wire[pos:amp])
        dash = wire.find("-", amp + 1)
        if dash < 0:
            raise MUTF7Error("unterminated base64 shift (no '-')")
        out.append(_decode_segment(wire[amp + 1 : dash]))
        pos = dash + 1
    result = "".join(out)
    if encode(result) != wire:
        raise MUTF7Error("not the canonical modified UTF-7 form")
    return result


def _is_printable_ascii(text: str) -> bool:
    return all("\x20" <= ch <= "\x7e" for ch in text)


def _decode_segment(segment: str) -> str:
    if not segment:
        return "&"
    if not _BASE64_SEGMENT.fullmatch(segment):
        raise MUTF7Error("character outside the modified base64 alphabet")
    if len(segment) % 4 == 1:
        raise MUTF7Error("truncated base64 segment")
    padded = segment.replace(",", "/") + "=" * (-len(segment) % 4)
    try:
        raw = base64.b64decode(padded, validate=True)
    except binascii.Error as exc:
        raise MUTF7Error("invalid base64") from exc
    if len(raw) % 2:
        raise MUTF7Error("base64 segment is not whole UTF-16 units")
    try:
        return raw.decode("utf-16-be")
    except UnicodeDecodeError as exc:
        raise MUTF7Error("invalid UTF-16 (lone surrogate)") from exc
