"""RFC 5322 address lists as the IMAP ENVELOPE needs them: raw, with groups and routes.

Theory of operation
-------------------
ENVELOPE wants, per address, ``(name adl mailbox host)`` with the display name and local part
"after removing [RFC5322] quoting" but otherwise as written (RFC 9051 §9, ``addr-name`` and
``addr-mailbox``), the obsolete source route (``adl``), and group syntax as start and end
markers. The stdlib does not fit: :func:`email.utils.getaddresses` flattens groups away and
drops routes, and :mod:`email.headerregistry` decodes RFC 2047 words in display names (which
ENVELOPE must not do) and raises on some real messages (an empty group followed by a comment).
So this module has its own small, lenient parser, patterned on Dovecot's message-address.c:

1. A regex tokenizer yields atoms, quoted strings (unquoted), domain literals, comments and the
   specials ``< > @ , ; : .``; comments nest, which the regex cannot express, so a short loop
   skips them.
2. Outside angle brackets, ``,`` separates addresses, ``:`` opens a group (its phrase is the
   group name) and ``;`` closes it; an unterminated group is closed at the end.
3. An address with ``<...>`` takes its display name from the words before ``<``; inside, a
   leading ``@a,@b:`` is the route. A bare ``local@domain`` takes its name from a trailing
   comment, the old ``user@host (Real Name)`` convention. Words of a phrase are joined by one
   space, ``.`` sticks to the word before it.
4. A missing local part or domain becomes ``MISSING_MAILBOX`` / ``MISSING_DOMAIN`` (Dovecot's
   placeholders): a NIL host would turn the address into a group marker.

Input length is bounded by the caller (:data:`mailpost.mime.headers.MAX_VALUE`), and the work is
linear in it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

MISSING_MAILBOX = "MISSING_MAILBOX"
MISSING_DOMAIN = "MISSING_DOMAIN"

_TOKEN = re.compile(r"""
    (?P<ws>[ \t\r\n]+)
  | (?P<quoted>"(?:[^"\\]|\\.)*(?:"|\Z))
  | (?P<literal>\[(?:[^\[\]\\]|\\.)*(?:\]|\Z))
  | (?P<comment>\()
  | (?P<special>[<>@,;:.])
  | (?P<atom>[^\s()<>@,;:\\".\[\]]+)
  | (?P<other>.)
""", re.VERBOSE | re.DOTALL)
_PAREN_OR_ESCAPE = re.compile(r"[()\\]")
_BACKSLASH_PAIR = re.compile(r"\\(.)", re.DOTALL)

# Token kinds: "word" (atom, quoted string, domain literal), "comment", "ws" (white space), or
# a special character (the kind is the character itself).
_Token = tuple[str, str]


@dataclass(frozen=True, slots=True)
class Address:
    """One ENVELOPE address structure; a group marker has ``host`` None (RFC 9051 §7.5.2)."""

    name: str | None
    adl: str | None
    mailbox: str | None
    host: str | None


GROUP_END = Address(None, None, None, None)


def parse_address_list(value: str) -> list[Address]:
    """The ENVELOPE addresses of an address-list header value (group markers included)."""
    result: list[Address] = []
    current: list[_Token] = []
    in_group = in_angle = False
    for token in _tokenize(value):
        kind = token[0]
        if kind == "<":
            in_angle = True
        elif kind == ">":
            in_angle = False
        elif not in_angle and kind in ",;:":
            if kind == ":" and not in_group and not _has_special(current, "@"):
                result.append(Address(None, None, _phrase(current) or "", None))
                in_group, current = True, []
                continue
            if kind == "," or (kind == ";" and in_group):
                result.extend(_mailbox(current))
                current = []
                if kind == ";":
                    result.append(GROUP_END)
                    in_group = False
                continue
        current.append(token)
    result.extend(_mailbox(current))
    if in_group:
        result.append(GROUP_END)
    return result


def _has_special(tokens: list[_Token], special: str) -> bool:
    return any(kind == special for kind, _ in tokens)


def _tokenize(value: str) -> list[_Token]:
    tokens: list[_Token] = []
    pos = 0
    while pos < len(value):
        match = _TOKEN.match(value, pos)
        if match is None:  # cannot happen: the last alternative matches any character
            break
        kind = match.lastgroup
        pos = match.end()
        if kind == "comment":
            content, pos = _comment(value, pos)
            tokens.append(("comment", content))
        elif kind == "ws":
            tokens.append(("ws", " "))
        elif kind == "quoted":
            tokens.append(("word", _unquote(match.group())))
        elif kind == "special":
            tokens.append((match.group(), match.group()))
        elif kind in ("atom", "literal", "other"):
            tokens.append(("word", match.group()))
    return tokens


def _comment(value: str, pos: int) -> tuple[str, int]:
    """Skip a (possibly nested, possibly unterminated) comment opened just before ``pos``."""
    depth, start = 1, pos
    while (match := _PAREN_OR_ESCAPE.search(value, pos)) is not None:
        char = match.group()
        pos = match.end()
        if char == "\\":
            pos += 1  # a quoted-pair: the next character is not a parenthesis
            continue
        depth += 1 if char == "(" else -1
        if depth == 0:
            return _BACKSLASH_PAIR.sub(r"\1", value[start:match.start()]).strip(), pos
    return _BACKSLASH_PAIR.sub(r"\1", value[start:]).strip(), len(value)


def _unquote(quoted: str) -> str:
    inner = quoted[1:-1] if len(quoted) > 1 and quoted.endswith('"') else quoted[1:]
    return _BACKSLASH_PAIR.sub(r"\1", inner)


def _phrase(tokens: list[_Token]) -> str | None:
    """Display-name words, comments dropped (RFC 5322 §3.2.5); white space and comments
    between words become one space, words written together stay together ("Q.")."""
    out = ""
    separated = False
    for kind, word in tokens:
        if kind in ("ws", "comment"):
            separated = bool(out)
        elif kind in ("word", "."):
            out += " " + word if separated else word
            separated = False
    return out or None


def _mailbox(tokens: list[_Token]) -> list[Address]:
    """The address a run of tokens between separators stands for (none if only comments)."""
    if all(kind in ("comment", "ws") for kind, _ in tokens):
        return []
    if _has_special(tokens, "<"):
        return [_angle_address(tokens)]
    local, domain = _addr_spec(tokens)
    comments = [word for kind, word in tokens if kind == "comment" and word]
    return [Address(comments[-1] if comments else None, None, local, domain)]


def _angle_address(tokens: list[_Token]) -> Address:
    opening = next(i for i, (kind, _) in enumerate(tokens) if kind == "<")
    name = _phrase(tokens[:opening])
    inner = tokens[opening + 1:]
    closing = next((i for i, (kind, _) in enumerate(inner) if kind == ">"), len(inner))
    inner = [t for t in inner[:closing] if t[0] != "comment"]
    route = None
    if inner and inner[0][0] == "@":
        colon = next((i for i, (kind, _) in enumerate(inner) if kind == ":"), None)
        if colon is not None:
            route = _route(inner[:colon])
            inner = inner[colon + 1:]
    local, domain = _addr_spec(inner)
    return Address(name, route, local, domain)


def _route(tokens: list[_Token]) -> str | None:
    """``@a,@b`` from an obs-route (RFC 5322 §4.4), as Dovecot writes it."""
    hops = "".join(word for kind, word in tokens if kind in ("word", ".", "@"))
    parts = [hop for hop in hops.split("@") if hop]
    return ",".join("@" + hop for hop in parts) or None


def _addr_spec(tokens: list[_Token]) -> tuple[str, str]:
    """Local part (unquoted) and domain of ``local@domain``, placeholders for missing ones."""
    words = [(kind, word) for kind, word in tokens if kind in ("word", ".", "@")]
    at = max((i for i, (kind, _) in enumerate(words) if kind == "@"), default=None)
    local_tokens = words if at is None else words[:at]
    domain_tokens = [] if at is None else words[at + 1:]
    local = "".join(word for kind, word in local_tokens if kind != "@")
    domain = "".join(word for kind, word in domain_tokens if kind != "@")
    return local or MISSING_MAILBOX, domain or MISSING_DOMAIN
