"""Structured MIME header values: Content-Type, Content-Disposition, Content-Language, tokens.

Theory of operation
-------------------
RFC 2045 §5.1 gives ``type "/" subtype *(";" parameter)`` with ``parameter := attribute "="
value`` and ``value := token / quoted-string``; RFC 2183 gives Content-Disposition the same
parameter syntax. Real mail bends all of it, so splitting is lenient, in the way of the
stdlib's own ``Message.get_params``: an unquoted value runs to the next ``;`` (``name=my
file.txt`` keeps its space), a trailing ``(comment)`` is dropped, an unterminated quoted string
runs to the end, junk between parameters is skipped. The splitting is done here with one regex
per parameter, because the stdlib's splitter is private; it is linear in the value.

RFC 2231 (continuations ``name*0``, ``name*1``, charset and language ``name*=utf-8'en'%E2%82%AC``)
is then handed to the stdlib's documented :func:`email.utils.decode_params`, after removing what
makes it raise: a name used both with and without a section number (it compares ``None`` with
an ``int``) and absurd section numbers (``int()`` refuses over 4,300 digits). The value octets of
an extended parameter are decoded with their charset when Python knows it as a text codec (see
:func:`mailpost.mime.headers.text_codec`); otherwise they stay undecoded (surrogates), with their
label, so that rendering can still reproduce them exactly.

Inputs are the unfolded value octets. They are mapped to ``str`` through Latin-1, so each octet
is one code point and nothing is lost on the way through :mod:`email`; values come back out as
UTF-8 text with surrogateescape (:func:`mailpost.mime.headers.text`). Values longer than
:data:`MAX_STRUCTURED` octets are cut first, and at most :data:`MAX_PARAMS` raw parameters are
read, so a hostile header costs bounded time (security catalogue M2).
"""

from __future__ import annotations

import re
from email.utils import decode_params, quote, unquote

from mailpost.mime.headers import text, text_codec
from mailpost.mime.part import Param

MAX_STRUCTURED = 16 * 1024
MAX_PARAMS = 1000

# RFC 2045 §5.1: token := 1*<any (US-ASCII) CHAR except SPACE, CTLs, or tspecials>.
_TOKEN = r"[!#$%&'*+\-.^_`{|}~0-9A-Za-z]+"
_COMMENT = r"(?:\([^)]*\)?[ \t]*)?"
_MEDIA_TYPE = re.compile(rf"[ \t]*{_COMMENT}({_TOKEN})[ \t]*/[ \t]*({_TOKEN})")
_LEADING_TOKEN = re.compile(rf"[ \t]*{_COMMENT}({_TOKEN})")
_WHOLE_TOKEN = re.compile(rf"[ \t]*({_TOKEN})[ \t]*(?:\(.*)?")
_PARAM = re.compile(r"""
    [ \t;]*
    (?P<name>[^=;\s"]+) [ \t]*
    (?: = [ \t]* (?P<value> "(?:[^"\\]|\\.)*"? | [^;]* ) )?
    [^;]*
""", re.VERBOSE | re.DOTALL)
_BACKSLASH_PAIR = re.compile(r"\\(.)", re.DOTALL)
# The names email.utils.decode_params treats as RFC 2231 sections (its own rule, re.ASCII \w).
_SECTION_NAME = re.compile(r"(\w+)\*(?:([0-9]+)\*?)?", re.ASCII)
# A language tag as Dovecot and RFC 3282 read it: an atom between commas.
_LANGUAGE_TAG = re.compile(r"[A-Za-z0-9][A-Za-z0-9\-_.]*")


def parse_content_type(raw: bytes) -> tuple[str, str, list[Param]] | None:
    """``(type, subtype, params)`` lowercased, or None when the value is not a media type.

    RFC 2045 §5.2: a syntactically invalid Content-Type is to be treated like a missing one, so
    the caller applies its default on None.
    """
    value = _as_latin1(raw)
    head = _MEDIA_TYPE.match(value)
    if head is None:
        return None
    return head.group(1).lower(), head.group(2).lower(), _parameters(value, head.end())


def parse_disposition(raw: bytes) -> tuple[str, list[Param]] | None:
    """``(disposition type, params)`` of a Content-Disposition value (RFC 2183), or None."""
    value = _as_latin1(raw)
    head = _LEADING_TOKEN.match(value)
    if head is None:
        return None
    return head.group(1).lower(), _parameters(value, head.end())


def parse_token(raw: bytes) -> str | None:
    """A single lowercased token (Content-Transfer-Encoding, RFC 2045 §6.1), or None."""
    match = _WHOLE_TOKEN.fullmatch(_as_latin1(raw))
    return None if match is None else match.group(1).lower()


def parse_language(raw: bytes) -> list[str] | None:
    """The language tags of a Content-Language value (RFC 3282), or None if there are none."""
    value = re.sub(r"\([^)]*\)?", " ", _as_latin1(raw))
    tags = [tag.strip() for tag in value.split(",")]
    found = [tag for tag in tags if _LANGUAGE_TAG.fullmatch(tag)]
    return found or None


def _as_latin1(raw: bytes) -> str:
    return raw[:MAX_STRUCTURED].decode("latin-1")


def _parameters(value: str, pos: int) -> list[Param]:
    semicolon = value.find(";", pos)
    if semicolon < 0:
        return []
    pairs = _split_parameters(value, semicolon)
    try:
        return _merge_rfc2231(pairs)
    except Exception:  # noqa: BLE001 -- decode_params on unforeseen input: keep values unmerged
        return [Param(name, text(val.encode("latin-1"))) for name, val in pairs]


def _split_parameters(value: str, pos: int) -> list[tuple[str, str]]:
    """Raw ``(lowercased name, unquoted value)`` pairs from ``value[pos:]``."""
    pairs: list[tuple[str, str]] = []
    while pos < len(value) and len(pairs) < MAX_PARAMS:
        match = _PARAM.match(value, pos)
        if match is None or match.end() == pos:
            following = value.find(";", pos + 1)
            pos = len(value) if following < 0 else following
            continue
        pos = match.end()
        pairs.append((match.group("name").lower(), _clean_value(match.group("value"))))
    return pairs


def _clean_value(raw: str | None) -> str:
    if raw is None:
        return ""
    if raw.startswith('"'):
        inner = raw[1:-1] if len(raw) > 1 and raw.endswith('"') else raw[1:]
        return _BACKSLASH_PAIR.sub(r"\1", inner)
    comment = raw.find("(")
    return (raw if comment < 0 else raw[:comment]).strip(" \t")


def _without_conflicts(pairs: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """Drop what makes decode_params raise; see the module docstring."""
    numbered: set[str] = set()
    plain: set[str] = set()
    for name, _ in pairs:
        section = _SECTION_NAME.fullmatch(name)
        if section is not None:
            (numbered if section.group(2) is not None else plain).add(section.group(1))
    kept = []
    for name, val in pairs:
        section = _SECTION_NAME.fullmatch(name)
        if section is not None:
            base, number = section.group(1), section.group(2)
            if number is None and base in numbered:
                continue  # "name*=" next to "name*0=": the continuations win
            if number is not None and len(number) > 6:
                continue
        kept.append((name, val))
    return kept


def _merge_rfc2231(pairs: list[tuple[str, str]]) -> list[Param]:
    """Merge continuations and decode charsets with :func:`email.utils.decode_params`."""
    quoted_pairs = [(name, f'"{quote(val)}"') for name, val in _without_conflicts(pairs)]
    merged = decode_params([("", "")] + quoted_pairs)[1:]
    params = []
    for name, val in merged:
        if isinstance(val, tuple):
            params.append(_extended_param(name, *val))
        else:
            params.append(Param(name, text(unquote(val).encode("latin-1", "replace"))))
    return params


def _extended_param(name: str, charset: str | None, language: str | None,
                    encoded: str) -> Param:
    """An RFC 2231 ``name*`` value: octets in ``charset``, decoded to text when possible."""
    octets = unquote(encoded).encode("latin-1", "replace")
    label = charset or ""
    codec = text_codec(label)
    if codec is None:
        return Param(name, text(octets), label, language or "")
    return Param(name, octets.decode(codec, "replace"), "utf-8", language or "")
