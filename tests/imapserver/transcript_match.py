"""Response patterns for the IMAP transcripts: a forgiving tokenizer and a structural matcher.

Theory of operation
-------------------
An expected line of a transcript (``* 3 FETCH (UID 7 FLAGS (\\Seen))``) and a line the
server sent are both cut into the same token tree: atoms, strings (quoted or literal, by
content) and groups (``(...)`` lists and ``[...]`` response codes). Atoms followed directly by
a bracket (``BODY[HEADER.FIELDS (SUBJECT)]<0>``) stay one atom, as in the RFC 9051 grammar.
The tokenizer never fails: human-readable text after a status is just more atoms, so a
stray parenthesis in it cannot break a comparison.

Matching is structural, with the freedoms the protocol gives a server:

* atoms compare case-insensitively (RFC 9051 §9: "case-insensitive" for every keyword);
  an atom and a string with the same content are equal (``astring``), except ``NIL``;
* ``$name`` anywhere inside an atom or string captures the text on its first use and must
  equal it afterwards (``$a:$b`` captures both ends of a range); ``$$`` is a plain ``$``
  (``$$Forwarded`` is the keyword ``$Forwarded``);
* a lone ``*`` as the last element of a line or a list stands for whatever follows;
* a list after ``FLAGS``, ``PERMANENTFLAGS``, ``LIST`` or ``LSUB`` is a set, because the
  order of flags and mailbox attributes carries no meaning;
* the list after ``FETCH`` and the list of a ``STATUS`` response are unordered name/value
  pairs (RFC 9051 §7.5.2 and §7.3.4 fix no order).

Every function is pure: bindings are copied, never changed in place, so a failed branch of
a search leaves nothing behind.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

Bindings = dict[str, str]
_LITERAL = re.compile(rb"\{(\d+)\+?\}\r\n")
_VARIABLE = re.compile(r"\$(\$|[A-Za-z_][A-Za-z0-9_]*)")  # "$$" is a plain "$"
_ATOM_STOP = b" ()]\""
_PATTERN_ESCAPES = {b"r": b"\r", b"n": b"\n"}
_SET_AFTER = {"FLAGS", "PERMANENTFLAGS", "LIST", "LSUB"}


@dataclass(frozen=True)
class Atom:
    text: str


@dataclass(frozen=True)
class Text:
    """A quoted string or a literal: only its content counts."""

    value: str


@dataclass(frozen=True)
class Group:
    bracket: str  # "(" or "["
    items: tuple[Token, ...]


Token = Atom | Text | Group
WILDCARD = Atom("*")


# -- tokenizer --------------------------------------------------------------------------------

def tokenize(data: bytes, pattern: bool = False) -> list[Token]:
    """Cut one response (literals inlined as ``{n}\\r\\n`` + octets) into tokens. In a
    ``pattern``, ``\\r`` and ``\\n`` inside a quoted string stand for CR and LF, so an
    expected literal can be written on one line."""
    stack: list[tuple[str, list[Token]]] = [("", [])]
    index = 0
    while index < len(data):
        char = data[index:index + 1]
        if char == b" ":
            index += 1
        elif char in (b"(", b"["):
            stack.append((char.decode(), []))
            index += 1
        elif char in (b")", b"]") and _closes(stack, char):
            bracket, items = stack.pop()
            stack[-1][1].append(Group(bracket, tuple(items)))
            index += 1
        elif char == b'"':
            text, index = _quoted(data, index + 1, pattern)
            stack[-1][1].append(Text(text))
        elif (literal := _LITERAL.match(data, index)) is not None:
            start = literal.end()
            end = start + int(literal.group(1))
            stack[-1][1].append(Text(data[start:end].decode("utf-8", "replace")))
            index = end
        else:
            atom, index = _atom(data, index)
            stack[-1][1].append(Atom(atom))
    while len(stack) > 1:  # tolerate unclosed groups: close them at the end
        bracket, items = stack.pop()
        stack[-1][1].append(Group(bracket, tuple(items)))
    return stack[0][1]


def _closes(stack: list[tuple[str, list[Token]]], char: bytes) -> bool:
    return len(stack) > 1 and {"(": b")", "[": b"]"}[stack[-1][0]] == char


def _quoted(data: bytes, index: int, pattern: bool) -> tuple[str, int]:
    out = bytearray()
    while index < len(data):
        char = data[index]
        if char == 0x5C and index + 1 < len(data):  # backslash quotes the next octet
            quoted = data[index + 1:index + 2]
            out += _PATTERN_ESCAPES.get(quoted, quoted) if pattern else quoted
            index += 2
            continue
        if char == 0x22:
            return out.decode("utf-8", "replace"), index + 1
        out.append(char)
        index += 1
    return out.decode("utf-8", "replace"), index


def _atom(data: bytes, index: int) -> tuple[str, int]:
    """An atom; a ``[`` inside it runs to its matching ``]`` (``BODY[...]``, RFC 9051 §9)."""
    start = index
    while index < len(data) and data[index:index + 1] not in (b" ", b"(", b")", b'"'):
        if data[index:index + 1] == b"[" and index > start:
            index = _bracket_end(data, index)
            continue
        if data[index:index + 1] == b"]" and index > start:
            break
        index += 1
    if index == start:  # a lone closing bracket with nothing open: keep it as an atom
        index += 1
    return data[start:index].decode("utf-8", "replace"), index


def _bracket_end(data: bytes, index: int) -> int:
    depth = 0
    while index < len(data):
        if data[index:index + 1] == b"[":
            depth += 1
        elif data[index:index + 1] == b"]":
            depth -= 1
            if depth == 0:
                return index + 1
        index += 1
    return index


def render(tokens: Sequence[Token]) -> str:
    """Tokens back to text, for failure reports."""
    parts = []
    for token in tokens:
        if isinstance(token, Atom):
            parts.append(token.text)
        elif isinstance(token, Text):
            parts.append('"' + token.value.replace("\\", "\\\\").replace('"', '\\"') + '"')
        else:
            close = ")" if token.bracket == "(" else "]"
            parts.append(token.bracket + render(token.items) + close)
    return " ".join(parts)


# -- matching ---------------------------------------------------------------------------------

def match_line(pattern: Sequence[Token], actual: Sequence[Token],
               bindings: Bindings) -> Bindings | None:
    """The bindings that make ``pattern`` equal to ``actual``, or None."""
    return _ordered(pattern, actual, bindings)


def _ordered(pattern: Sequence[Token], actual: Sequence[Token],
             bindings: Bindings) -> Bindings | None:
    current: Bindings | None = bindings
    for index, expected in enumerate(pattern):
        if expected == WILDCARD and index == len(pattern) - 1:
            return current
        if index >= len(actual) or current is None:
            return None
        current = _token(expected, actual[index], current, _kind(pattern, index))
    return current if current is not None and len(actual) == len(pattern) else None


def _kind(siblings: Sequence[Token], index: int) -> str:
    """How to compare the group at ``siblings[index]``: "set", "pairs" or "ordered"."""
    before = siblings[index - 1] if index >= 1 else None
    name = before.text.upper() if isinstance(before, Atom) else ""
    if name in _SET_AFTER:
        return "set"
    if name == "FETCH":
        return "pairs"
    first = siblings[index - 2] if index >= 2 else None
    if index == 2 and isinstance(first, Atom) and first.text.upper() == "STATUS":
        return "pairs"
    return "ordered"


def _token(expected: Token, actual: Token, bindings: Bindings, kind: str) -> Bindings | None:
    if isinstance(expected, Group):
        if not isinstance(actual, Group) or actual.bracket != expected.bracket:
            return None
        if kind == "set":
            return _unordered(list(expected.items), list(actual.items), bindings)
        if kind == "pairs":
            return _pairs(expected.items, actual.items, bindings)
        return _ordered(expected.items, actual.items, bindings)
    if isinstance(actual, Group):
        return None
    if isinstance(expected, Atom) and expected.text.upper() == "NIL":
        return bindings if _is_nil(actual) else None
    if _is_nil(actual):
        return None
    folded = isinstance(expected, Atom) and isinstance(actual, Atom)
    pattern = expected.text if isinstance(expected, Atom) else expected.value
    value = actual.text if isinstance(actual, Atom) else actual.value
    return match_text(pattern, value, bindings, folded)


def _is_nil(token: Token) -> bool:
    return isinstance(token, Atom) and token.text.upper() == "NIL"


def match_text(pattern: str, value: str, bindings: Bindings, folded: bool) -> Bindings | None:
    """One atom or string with ``$name`` captures against a value."""
    regex, names = _regex(pattern, bindings)
    found = re.fullmatch(regex, value, re.IGNORECASE if folded else 0)
    if found is None:
        return None
    if not names:
        return bindings
    merged = dict(bindings)
    for name in names:
        merged[name] = found.group(name)
    return merged


def _regex(pattern: str, bindings: Bindings) -> tuple[str, list[str]]:
    parts: list[str] = []
    fresh: list[str] = []
    position = 0
    for variable in _VARIABLE.finditer(pattern):
        parts.append(re.escape(pattern[position:variable.start()]))
        name = variable.group(1)
        if name == "$":
            parts.append(re.escape("$"))
        elif name in bindings:
            parts.append(re.escape(bindings[name]))
        elif name in fresh:
            parts.append(f"(?P={name})")
        else:
            fresh.append(name)
            # Captures stop at the characters that separate numbers in sets and codes.
            parts.append(f"(?P<{name}>[^\\s:,()\\[\\]]+?)")
        position = variable.end()
    parts.append(re.escape(pattern[position:]))
    return "".join(parts), fresh


def _unordered(expected: list[Token], actual: list[Token],
               bindings: Bindings) -> Bindings | None:
    """Each expected element pairs with a distinct actual one; ``*`` admits extras."""
    extras = bool(expected) and expected[-1] == WILDCARD
    wanted = expected[:-1] if extras else expected
    if not extras and len(wanted) != len(actual):
        return None
    return _assign(wanted, actual, bindings)


def _assign(wanted: list[Token], actual: list[Token], bindings: Bindings) -> Bindings | None:
    if not wanted:
        return bindings
    for index, candidate in enumerate(actual):
        found = _token(wanted[0], candidate, bindings, "ordered")
        if found is not None:
            rest = _assign(wanted[1:], actual[:index] + actual[index + 1:], found)
            if rest is not None:
                return rest
    return None


def _pairs(expected: Sequence[Token], actual: Sequence[Token],
           bindings: Bindings) -> Bindings | None:
    """Name/value lists (FETCH, STATUS): same names, matching values, any order."""
    extras = bool(expected) and expected[-1] == WILDCARD and len(expected) % 2 == 1
    wanted = list(expected[:-1] if extras else expected)
    if len(wanted) % 2 or len(actual) % 2:
        return None
    have = {_pair_key(actual[i]): (actual[i], actual[i + 1]) for i in range(0, len(actual), 2)}
    if not extras and len(have) != len(wanted) // 2:
        return None
    current: Bindings | None = bindings
    for i in range(0, len(wanted), 2):
        found = have.get(_pair_key(wanted[i]))
        if found is None or current is None:
            return None
        current = _token(wanted[i + 1], found[1], current, _kind([wanted[i], wanted[i + 1]], 1))
    return current


def _pair_key(token: Token) -> str:
    return token.text.upper() if isinstance(token, Atom) else render([token]).upper()
