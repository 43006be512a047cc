"""BINARY and BINARY.SIZE: a part's content with its Content-Transfer-Encoding removed.

Theory of operation
-------------------
RFC 3516 §4.3 (folded into RFC 9051 §6.4.5 and §7.5.2): BINARY returns "the content of the
specified section after removing any CTE-related encoding", and BINARY.SIZE its length, which
"MUST match the size of the <nstring> or <literal8> that will be returned by the corresponding
FETCH BINARY request" (so :func:`binary_size` is computed from the same decoding).

* 7bit, 8bit, binary and no Content-Transfer-Encoding are identity encodings.
* base64 (RFC 2045 §6.8): characters outside the alphabet are ignored, as §6.8 says decoders
  must; decoding stops at the first ``=`` padding, as the stdlib's lenient decoder does; a
  truncated final group is completed rather than rejected.
* quoted-printable (RFC 2045 §6.7): trailing white space on each line is removed first (rule
  (3): "any trailing white space on a line must be deleted, as it will necessarily have been
  added by intermediate transport agents"), then the stdlib's :func:`binascii.a2b_qp` decodes;
  malformed ``=XY`` sequences stay as they are.
* Anything else raises :class:`UnknownTransferEncoding`: "If the server does not know how to
  decode the section's CTE, it MUST fail the request and issue a "NO" response that contains
  the "UNKNOWN-CTE" extended response code."
* For text/* parts, line ends are made CRLF (RFC 3516 §6: servers "MUST ensure that textual
  line-oriented sections are always transmitted using the IMAP4 CRLF line termination syntax").

BINARY is defined for leaf parts only (RFC 9051 §6.4.5); for a multipart or an encapsulated
message, whose encoding can only be an identity (RFC 2045 §6.4), the body is returned as is.
Decoding runs in C (``bytes.translate``, ``binascii``, ``re``): no per-octet Python loop.
"""

from __future__ import annotations

import binascii
import re

from mailpost.mime.part import Part

IDENTITY_ENCODINGS = frozenset({None, "7bit", "8bit", "binary"})

_BASE64_ALPHABET = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/="
_NOT_BASE64 = bytes(sorted(set(range(256)) - set(_BASE64_ALPHABET)))
_QP_TRAILING_SPACE = re.compile(rb"[ \t]+(?=\r?\n|\Z)")
_BARE_LF = re.compile(rb"(?<!\r)\n")


class UnknownTransferEncoding(Exception):
    """The part's Content-Transfer-Encoding cannot be decoded: answer NO [UNKNOWN-CTE]."""

    def __init__(self, encoding: str) -> None:
        super().__init__(f"unknown Content-Transfer-Encoding {encoding!r}")
        self.encoding = encoding


def binary(data: bytes, part: Part) -> bytes:
    """The decoded content of ``part`` of the message ``data``.

    Raises:
        UnknownTransferEncoding: the encoding is not one this module can remove.
    """
    body = data[part.body_start:part.end]
    if not part.is_leaf:
        return body
    decoded = _decode(body, part.encoding)
    if part.media_type == "text":
        decoded = _BARE_LF.sub(b"\r\n", decoded)
    return decoded


def binary_size(data: bytes, part: Part) -> int:
    """The length of :func:`binary` for the same part (same exception)."""
    if part.encoding in IDENTITY_ENCODINGS and (part.media_type != "text" or not part.is_leaf):
        return part.size
    return len(binary(data, part))


def _decode(body: bytes, encoding: str | None) -> bytes:
    if encoding in IDENTITY_ENCODINGS:
        return body
    if encoding == "base64":
        return _decode_base64(body)
    if encoding == "quoted-printable":
        return binascii.a2b_qp(_QP_TRAILING_SPACE.sub(b"", body))
    raise UnknownTransferEncoding(encoding or "")


def _decode_base64(body: bytes) -> bytes:
    clean = body.translate(None, _NOT_BASE64)
    padding = clean.find(b"=")
    if padding >= 0:
        clean = clean[:padding]
    remainder = len(clean) % 4
    if remainder == 1:  # a lone sextet carries no whole octet
        clean = clean[:-1]
    elif remainder:
        clean += b"=" * (4 - remainder)
    return binascii.a2b_base64(clean)
