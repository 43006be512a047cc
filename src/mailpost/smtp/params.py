"""ESMTP parameters of MAIL and RCPT (RFC 5321 §4.1.2 esmtp-param) and xtext.

Theory of operation
-------------------
:func:`parse_mail_params` and :func:`parse_rcpt_params` turn the text after the
path into a frozen :class:`MailParams` / :class:`RcptParams`, or raise
:class:`ParamError` carrying the reply to send:

* a keyword this server does not implement for that command: ``555 5.5.4``
  (RFC 5321 §4.1.1.11);
* a parameter given twice, a missing or malformed value: ``501 5.5.4``;
* ``SIZE`` above the server's limit: ``552 5.3.4`` (RFC 1870 §6.1).

Supported: ``SIZE`` (RFC 1870), ``BODY=7BIT|8BITMIME`` (RFC 6152),
``SMTPUTF8`` (RFC 6531), ``RET``/``ENVID`` on MAIL and ``NOTIFY``/``ORCPT`` on
RCPT (RFC 3461), ``AUTH=`` on MAIL (RFC 4954 §5). ``BODY=BINARYMIME`` is not
supported, because BDAT content is normalised to CRLF lines.

xtext values (ENVID, ORCPT, AUTH) are decoded here and any control character
in the decoded value (CR, LF, NUL, TAB, anything below 0x20, or 0x7F) is
refused: such bytes are how Exim CVE-2020-28026 smuggled lines into its spool
(security catalogue S7). Keywords and fixed values are case-insensitive and
normalised to upper case.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from mailpost.smtp import replies
from mailpost.smtp.replies import Reply

_KEYWORD = re.compile(r"[A-Za-z0-9][A-Za-z0-9-]*")
# RFC 5321 esmtp-value: %d33-60 / %d62-126, extended with UTF-8 by RFC 6531 §3.3.
_VALUE = re.compile(r"[\x21-\x3c\x3e-\x7e\u00a0-\U0010ffff]+")
_XTEXT_HEX = re.compile(r"\+([0-9A-F]{2})")
_UTF8_ESCAPE = re.compile(r"\\x\{([0-9A-Fa-f]{1,6})\}")
_ADDR_TYPE = re.compile(r"[A-Za-z0-9!#$%&'*+\-/=?^_`{|}~]+")

MAX_ENVID = 100  # RFC 3461 §4.4
MAX_ORCPT = 500  # RFC 3461 §4.2
MAX_SIZE_DIGITS = 20  # RFC 1870 §3 size-value = 1*20DIGIT


class ParamError(ValueError):
    """A parameter is unknown or malformed; ``reply`` is the answer to send."""

    def __init__(self, reply: Reply, detail: str) -> None:
        super().__init__(detail)
        self.reply = reply


@dataclass(frozen=True, slots=True)
class MailParams:
    """ESMTP parameters of one MAIL command."""

    size: int | None = None
    body: str | None = None
    smtputf8: bool = False
    ret: str | None = None
    envid: str | None = None
    auth: str | None = None


@dataclass(frozen=True, slots=True)
class RcptParams:
    """ESMTP parameters of one RCPT command."""

    notify: tuple[str, ...] | None = None
    orcpt: str | None = None


def split_params(text: str) -> dict[str, str | None]:
    """Split ``KEY[=value] ...`` into an upper-cased dict; refuse malformed or duplicate ones."""
    params: dict[str, str | None] = {}
    for item in text.split():
        keyword, equals, value = item.partition("=")
        if not _KEYWORD.fullmatch(keyword):
            raise ParamError(replies.BAD_PARAMETER, f"malformed parameter {item!r}")
        if equals and not _VALUE.fullmatch(value):
            raise ParamError(replies.BAD_PARAMETER, f"malformed value in {item!r}")
        key = keyword.upper()
        if key in params:
            raise ParamError(replies.BAD_PARAMETER, f"duplicate parameter {key}")
        params[key] = value if equals else None
    return params


def parse_mail_params(text: str, *, max_size: int) -> MailParams:
    """Parse the parameters of MAIL FROM."""
    raw = split_params(text)
    _refuse_unknown(raw, _MAIL_KEYWORDS)
    size = _parse_size(raw["SIZE"]) if "SIZE" in raw else None
    if size is not None and size > max_size:
        raise ParamError(replies.MESSAGE_TOO_BIG, "declared SIZE above the limit")
    return MailParams(
        size=size,
        body=_choice(raw, "BODY", ("7BIT", "8BITMIME")),
        smtputf8=_flag(raw, "SMTPUTF8"),
        ret=_choice(raw, "RET", ("FULL", "HDRS")),
        envid=_xtext_param(raw, "ENVID", MAX_ENVID),
        auth=_auth_param(raw),
    )


def parse_rcpt_params(text: str, *, utf8: bool) -> RcptParams:
    """Parse the parameters of RCPT TO; ``utf8`` allows RFC 6533 ``utf-8`` ORCPT values."""
    raw = split_params(text)
    _refuse_unknown(raw, _RCPT_KEYWORDS)
    notify = _parse_notify(raw["NOTIFY"]) if "NOTIFY" in raw else None
    orcpt = _parse_orcpt(raw["ORCPT"], utf8) if "ORCPT" in raw else None
    return RcptParams(notify=notify, orcpt=orcpt)


_MAIL_KEYWORDS = frozenset({"SIZE", "BODY", "SMTPUTF8", "RET", "ENVID", "AUTH"})
_RCPT_KEYWORDS = frozenset({"NOTIFY", "ORCPT"})


def _refuse_unknown(raw: dict[str, str | None], known: frozenset[str]) -> None:
    for key in raw:
        if key not in known:
            raise ParamError(replies.UNKNOWN_PARAMETER, f"unsupported parameter {key}")
    # Only ORCPT has a UTF-8 form (RFC 6533); every other value is ASCII by definition.
    if any(not value.isascii() for key, value in raw.items() if value and key != "ORCPT"):
        raise ParamError(replies.BAD_PARAMETER, "non-ASCII parameter value")


def _required(value: str | None, key: str) -> str:
    if value is None:
        raise ParamError(replies.BAD_PARAMETER, f"{key} requires a value")
    return value


def _parse_size(value: str | None) -> int:
    text = _required(value, "SIZE")
    if not text.isdigit() or len(text) > MAX_SIZE_DIGITS:
        raise ParamError(replies.BAD_PARAMETER, "SIZE must be 1 to 20 digits")
    return int(text)


def _choice(raw: dict[str, str | None], key: str, allowed: tuple[str, ...]) -> str | None:
    if key not in raw:
        return None
    value = _required(raw[key], key).upper()
    if value not in allowed:
        # An unsupported BODY type (BINARYMIME) is "not implemented", not malformed.
        reply = replies.UNKNOWN_PARAMETER if key == "BODY" else replies.BAD_PARAMETER
        raise ParamError(reply, f"unsupported {key} value")
    return value


def _flag(raw: dict[str, str | None], key: str) -> bool:
    if key not in raw:
        return False
    if raw[key] is not None:
        raise ParamError(replies.BAD_PARAMETER, f"{key} takes no value")
    return True


def _xtext_param(raw: dict[str, str | None], key: str, max_length: int) -> str | None:
    if key not in raw:
        return None
    value = _required(raw[key], key)
    if len(value) > max_length:
        raise ParamError(replies.BAD_PARAMETER, f"{key} too long")
    return decode_xtext(value)


def _auth_param(raw: dict[str, str | None]) -> str | None:
    """RFC 4954 §5: ``AUTH=<>`` or ``AUTH=`` xtext-encoded mailbox."""
    if "AUTH" not in raw:
        return None
    value = _required(raw["AUTH"], "AUTH")
    return value if value == "<>" else decode_xtext(value)


def _parse_notify(value: str | None) -> tuple[str, ...]:
    """RFC 3461 §4.1: ``NEVER`` alone, or a list of SUCCESS, FAILURE, DELAY."""
    items = tuple(item.upper() for item in _required(value, "NOTIFY").split(","))
    if items == ("NEVER",):
        return items
    valid = {"SUCCESS", "FAILURE", "DELAY"}
    if not all(item in valid for item in items) or len(set(items)) != len(items):
        raise ParamError(replies.BAD_PARAMETER, "malformed NOTIFY value")
    return items


def _parse_orcpt(value: str | None, utf8: bool) -> str:
    """RFC 3461 §4.2 ``addr-type ";" xtext``; RFC 6533 ``utf-8`` addresses when SMTPUTF8."""
    text = _required(value, "ORCPT")
    if len(text) > MAX_ORCPT:
        raise ParamError(replies.BAD_PARAMETER, "ORCPT too long")
    addr_type, semicolon, encoded = text.partition(";")
    if not semicolon or not _ADDR_TYPE.fullmatch(addr_type) or not encoded:
        raise ParamError(replies.BAD_PARAMETER, "malformed ORCPT value")
    addr_type = addr_type.lower()
    if addr_type == "utf-8" and utf8:
        return f"{addr_type};{_decode_utf8_addr(encoded)}"
    if not encoded.isascii():
        raise ParamError(replies.BAD_PARAMETER, "non-ASCII ORCPT value")
    return f"{addr_type};{decode_xtext(encoded)}"


def decode_xtext(value: str) -> str:
    """Decode RFC 3461 §4 xtext; refuse malformed escapes and any control character."""
    if "+" in _XTEXT_HEX.sub("", value):
        raise ParamError(replies.BAD_PARAMETER, "malformed xtext")
    decoded = _XTEXT_HEX.sub(lambda m: chr(int(m.group(1), 16)), value)
    _refuse_controls(decoded)
    return decoded


def _decode_utf8_addr(value: str) -> str:
    """RFC 6533 §3 utf-8-addr-xtext / unitext: xtext plus ``\\x{HEX}`` escapes."""
    decoded = _UTF8_ESCAPE.sub(_unescape_code_point, decode_xtext(value))
    _refuse_controls(decoded)
    return decoded


def _unescape_code_point(match: re.Match[str]) -> str:
    code = int(match.group(1), 16)
    if code > 0x10FFFF or 0xD800 <= code <= 0xDFFF:
        raise ParamError(replies.BAD_PARAMETER, "invalid code point escape")
    return chr(code)


def _refuse_controls(text: str) -> None:
    if has_control_character(text):
        raise ParamError(replies.BAD_PARAMETER, "control character in parameter value")


def has_control_character(text: str) -> bool:
    """True when text holds a C0 control, DEL or a C1 control (security catalogue S7)."""
    return any(ord(c) < 0x20 or 0x7F <= ord(c) < 0xA0 for c in text)
