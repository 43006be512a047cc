"""The ``dkim keygen`` and ``dns-records`` commands of the ``mailpost`` command line.

Theory of operation
-------------------
Neither command touches the store: keys are files under ``data_dir/dkim`` and the records are
computed from the configuration. Both print zone-file lines that an operator can paste into a
zone (``name TTL IN TYPE value``); lines starting with ``;`` are comments in that syntax.
:func:`add_commands` hooks the commands into the parser that :mod:`mailpost.cli` builds; the
runners report their own errors so that ``cli`` needs no knowledge of DKIM.
"""

from __future__ import annotations

import argparse
import sys
from typing import TypeAlias

from mailpost.config import Config
from mailpost.mailauth import dkim, records

EXIT_OK = 0
EXIT_ERROR = 1

_Commands: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"


def _dkim_keygen(config: Config, args: argparse.Namespace) -> int:
    selector = args.selector or config.mailauth.dkim_selector
    try:
        created = dkim.keygen(args.domain, selector, config.data_dir)
    except (dkim.DKIMKeyError, FileExistsError) as exc:
        print(f"mailpost: error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    print(f"; DKIM keys for {args.domain} in {dkim.key_directory(config.data_dir, args.domain)}")
    print("; publish these TXT records (RFC 6376 §3.6.2, RFC 8463):")
    for name, value in created:
        print(records.Record(name, "TXT", records.txt(value)).zone_line())
    return EXIT_OK


def _dns_records(config: Config, args: argparse.Namespace) -> int:
    try:
        lines = records.dns_records(args.domain, config.hostname, config.data_dir)
    except dkim.DKIMKeyError as exc:
        print(f"mailpost: error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    print(f"; DNS records for {args.domain} served by {config.hostname}")
    if not records.dkim_records(args.domain, config.data_dir):
        print(f"; no DKIM key yet: run `mailpost dkim keygen {args.domain}` and run this again")
    for record in lines:
        print(record.zone_line())
    print(f"; serve this MTA-STS policy at https://mta-sts.{args.domain}/.well-known/"
          "mta-sts.txt (RFC 8461 §3.2):")
    for line in records.mta_sts_policy(config.hostname).splitlines():
        print(f";   {line}")
    return EXIT_OK


def add_commands(commands: _Commands, common: argparse.ArgumentParser) -> None:
    """Add ``dkim keygen DOMAIN [--selector S]`` and ``dns-records DOMAIN``."""
    group = commands.add_parser("dkim", help="manage DKIM signing keys",
                                description="manage DKIM signing keys")
    dkim_commands = group.add_subparsers(title="commands", dest="dkim_command", required=True,
                                         metavar="COMMAND")
    help_text = "create an RSA-2048 and an Ed25519 key for DOMAIN and print their DNS records"
    leaf = dkim_commands.add_parser("keygen", parents=[common], help=help_text,
                                    description=help_text)
    leaf.add_argument("domain", metavar="DOMAIN")
    leaf.add_argument("--selector", metavar="S", default=None,
                      help="selector prefix (default: [mailauth] dkim_selector); the keys are "
                           "S-rsa and S-ed25519")
    leaf.set_defaults(run=_dkim_keygen)
    help_text = "print every DNS record to publish for DOMAIN"
    leaf = commands.add_parser("dns-records", parents=[common], help=help_text,
                               description=help_text)
    leaf.add_argument("domain", metavar="DOMAIN")
    leaf.set_defaults(run=_dns_records)
