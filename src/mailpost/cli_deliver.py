"""The ``deliver`` command: put a message from standard input into local mailboxes.

Theory of operation
-------------------
``mailpost deliver [-f SENDER] [-m FOLDER] RECIPIENT...`` is a local delivery agent for other
programs (a front MTA's mailbox command, fetchmail's ``mda``, scripts): the work is done by
:mod:`mailpost.delivery.lda`, and this module only parses the command line, opens the store
with a :class:`~mailpost.doorbell.RelayingBus` so a running server's IDLE clients hear of the
message at once, and turns the outcome into a sysexits status (0, 65, 67 or 75) with one line
on standard error when it is not 0. Store trouble, even when opening the store, is 75 ("try
again later"), never the generic 1, so the calling MTA keeps the message queued.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import BinaryIO, TypeAlias

from mailpost.config import Config
from mailpost.delivery.lda import Outcome, Request, Status, deliver_stream
from mailpost.doorbell import RelayingBus
from mailpost.store.errors import StoreError

_Commands: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"


def add_commands(commands: _Commands, common: argparse.ArgumentParser) -> None:
    help_text = "deliver a message read from standard input to local mailboxes"
    leaf = commands.add_parser(
        "deliver", parents=[common], help=help_text,
        description=help_text + " (exit status 0, or 65/67/75 as sysexits.h)")
    leaf.add_argument("recipients", nargs="+", metavar="RECIPIENT",
                      help="local address: account, alias, sub-address or catch-all")
    leaf.add_argument("-f", "--from", dest="sender", metavar="SENDER", default=None,
                      help="envelope sender, recorded as Return-Path")
    leaf.add_argument("-m", "--mailbox", metavar="FOLDER", default="INBOX",
                      help="folder to file it in when the account has one of that name "
                           "(default: INBOX)")
    leaf.set_defaults(run=_deliver)


def _deliver(config: Config, args: argparse.Namespace) -> int:
    outcome = asyncio.run(deliver(config, _request(config, args), sys.stdin.buffer))
    if outcome.status is not Status.OK:
        print(f"mailpost: deliver: {outcome.detail}", file=sys.stderr)
    return int(outcome.status)


def _request(config: Config, args: argparse.Namespace) -> Request:
    return Request(recipients=args.recipients, sender=args.sender, mailbox=args.mailbox,
                   hostname=config.hostname, max_size=config.limits.max_message_size)


async def deliver(config: Config, request: Request, stream: BinaryIO) -> Outcome:
    """Open the store, deliver, close the store."""
    from mailpost.store import open_store  # not loaded for --help

    bus = RelayingBus(config.data_dir)
    try:
        config.data_dir.mkdir(parents=True, exist_ok=True)
        store = await open_store(config.data_dir, bus)
    except (StoreError, OSError) as exc:
        bus.close()
        return Outcome(Status.TEMPFAIL, f"cannot open the store: {exc}")
    try:
        return await deliver_stream(store, request, stream)
    finally:
        await store.close()
        bus.close()
