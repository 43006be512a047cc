"""ESMTP MAIL/RCPT parameters and xtext (mailpost.smtp.params)."""

from __future__ import annotations

import pytest

from mailpost.smtp import replies
from mailpost.smtp.params import (
    MailParams,
    ParamError,
    RcptParams,
    decode_xtext,
    parse_mail_params,
    parse_rcpt_params,
)
from mailpost.smtp.replies import Reply


def mail(text: str, max_size: int = 10_000) -> MailParams:
    return parse_mail_params(text, max_size=max_size)


def mail_error(text: str) -> Reply:
    with pytest.raises(ParamError) as caught:
        mail(text)
    return caught.value.reply


def rcpt_error(text: str, *, utf8: bool = False) -> Reply:
    with pytest.raises(ParamError) as caught:
        parse_rcpt_params(text, utf8=utf8)
    return caught.value.reply


def test_no_parameters() -> None:
    assert mail("") == MailParams()
    assert parse_rcpt_params("", utf8=False) == RcptParams()


def test_all_mail_parameters() -> None:
    params = mail("size=100 Body=8BITMIME SMTPUTF8 RET=full ENVID=QQ+2B1 AUTH=e+3Dmc2@example.com")
    assert params == MailParams(
        size=100, body="8BITMIME", smtputf8=True, ret="FULL", envid="QQ+1", auth="e=mc2@example.com"
    )
    assert mail("AUTH=<>").auth == "<>"
    assert mail("BODY=7bit").body == "7BIT"


def test_size_limits() -> None:
    """RFC 1870: size-value is 1*20DIGIT; above our limit is 552 5.3.4."""
    assert mail("SIZE=10000").size == 10_000
    assert mail_error("SIZE=10001") == replies.MESSAGE_TOO_BIG
    assert mail_error("SIZE=" + "9" * 21) == replies.BAD_PARAMETER
    assert mail_error("SIZE=-1") == replies.BAD_PARAMETER
    assert mail_error("SIZE") == replies.BAD_PARAMETER


@pytest.mark.parametrize(
    ("text", "reply"),
    [
        ("XFOO=1", replies.UNKNOWN_PARAMETER),
        ("NOTIFY=NEVER", replies.UNKNOWN_PARAMETER),
        ("BODY=BINARYMIME", replies.UNKNOWN_PARAMETER),
        ("RET=ALL", replies.BAD_PARAMETER),
        ("RET=FULL ret=HDRS", replies.BAD_PARAMETER),
        ("SMTPUTF8=yes", replies.BAD_PARAMETER),
        ("ENVID", replies.BAD_PARAMETER),
        ("ENVID=" + "a" * 101, replies.BAD_PARAMETER),
        ("-BAD=1", replies.BAD_PARAMETER),
        ("ENVID=a=b", replies.BAD_PARAMETER),
        ("ENVID=é", replies.BAD_PARAMETER),
    ],
)
def test_mail_parameter_errors(text: str, reply: Reply) -> None:
    assert mail_error(text) == reply


@pytest.mark.parametrize(
    "value",
    ["a+0D+0Ab", "a+00b", "a+09b", "a+7Fb", "a+1Bb"],
)
def test_control_characters_in_xtext_are_refused(value: str) -> None:
    """Security catalogue S7 (Exim CVE-2020-28026)."""
    assert mail_error(f"ENVID={value}") == replies.BAD_PARAMETER
    assert mail_error(f"AUTH={value}") == replies.BAD_PARAMETER
    assert rcpt_error(f"ORCPT=rfc822;{value}") == replies.BAD_PARAMETER


@pytest.mark.parametrize("value", ["a+", "a+4", "a+4g", "a+2b", "+"])
def test_malformed_xtext(value: str) -> None:
    with pytest.raises(ParamError):
        decode_xtext(value)


def test_xtext_decoding() -> None:
    assert decode_xtext("abc+2Bdef+20x") == "abc+def x"
    assert decode_xtext("") == ""


def test_rcpt_parameters() -> None:
    params = parse_rcpt_params("notify=success,Delay ORCPT=RFC822;joe+40x.example", utf8=False)
    assert params == RcptParams(notify=("SUCCESS", "DELAY"), orcpt="rfc822;joe@x.example")
    assert parse_rcpt_params("NOTIFY=never", utf8=False).notify == ("NEVER",)


@pytest.mark.parametrize(
    "text",
    [
        "NOTIFY=NEVER,SUCCESS",
        "NOTIFY=SUCCESS,SUCCESS",
        "NOTIFY=SOMETIMES",
        "NOTIFY=",
        "ORCPT=rfc822",
        "ORCPT=;a@b",
        "ORCPT=rfc822;",
        "ORCPT=rfc822;" + "a" * 500,
        "ORCPT=rfc822;a@b ORCPT=rfc822;c@d",
    ],
)
def test_rcpt_parameter_errors(text: str) -> None:
    assert rcpt_error(text) == replies.BAD_PARAMETER


def test_unknown_rcpt_parameter() -> None:
    assert rcpt_error("SIZE=1") == replies.UNKNOWN_PARAMETER


def test_utf8_orcpt_only_with_smtputf8() -> None:
    """RFC 6533: utf-8 addr-type, raw UTF-8 or \\x{HEX} escapes."""
    params = parse_rcpt_params("ORCPT=utf-8;j\\x{F6}s\u00e9@x.example", utf8=True)
    assert params.orcpt == "utf-8;jösé@x.example"
    assert rcpt_error("ORCPT=rfc822;jösé@x.example", utf8=True) == replies.BAD_PARAMETER
    assert rcpt_error("ORCPT=utf-8;jösé@x.example") == replies.BAD_PARAMETER
    assert rcpt_error("ORCPT=utf-8;a\\x{D800}b", utf8=True) == replies.BAD_PARAMETER
    assert rcpt_error("ORCPT=utf-8;a\\x{0A}b", utf8=True) == replies.BAD_PARAMETER
