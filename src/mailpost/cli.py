"""The ``mailpost`` command line: run the server and administer domains, users and aliases.

Theory of operation
-------------------
``main`` parses the arguments (argparse; usage errors exit with status 2), loads the
configuration once (:func:`mailpost.config.load`: ``--config``, ``$MAILPOST_CONFIG``,
``./mailpost.toml``, then development defaults) and runs the chosen command:

* ``serve`` hands the configuration to :func:`mailpost.app.serve`, imported only then so that
  the administrative commands never load the protocol stacks.
* ``check-config`` prints what the configuration means and checks the TLS files it names.
* every other command opens the store under ``data_dir`` (creating the directory), runs one
  operation from :mod:`mailpost.admin.ops` and closes the store again. SQLite in WAL mode lets
  this happen while the server runs in another process, and the store's change events ring the
  server's doorbell (:mod:`mailpost.doorbell`), so its IMAP sessions see what changed.
* ``deliver`` (:mod:`mailpost.cli_deliver`) files a message from standard input, for other
  programs; ``dkim`` and ``dns-records`` live in :mod:`mailpost.cli_mailauth`.

``user add`` and ``user passwd`` follow ``[pop3] apop``: when it is on they also store the
password sealed with the server key ``data_dir/apop.key`` (created on first use) as the
account's APOP secret; when it is off ``user passwd`` clears any secret stored before.

Input that can be checked without the store (password, quota) is checked before the store is
opened. Every failure an operator can cause is printed to stderr as ``mailpost: error: ...`` and
exits with status 1; the messages come from :class:`~mailpost.admin.ops.AdminError`,
:class:`~mailpost.config.ConfigError` or the store, so the command line adds no rules of its own.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import sys
from collections.abc import Awaitable, Callable, Sequence
from typing import TextIO, TypeAlias

from mailpost import __version__, cli_deliver, cli_mailauth
from mailpost.admin import ops
from mailpost.admin import queue as queue_ops
from mailpost.admin.ops import AdminError
from mailpost.auth.apop_key import APOPKey, APOPKeyError
from mailpost.config import Config, ConfigError, LimitsConfig, load
from mailpost.doorbell import RelayingBus
from mailpost.store.errors import StoreError
from mailpost.store.interface import MailStore

PROG = "mailpost"
EXIT_OK = 0
EXIT_ERROR = 1
EXIT_INTERRUPTED = 130  # the shell convention for "ended by SIGINT"

Runner = Callable[[Config, argparse.Namespace], int]
StoreAction = Callable[[MailStore, argparse.Namespace], Awaitable[None]]


# ---------------------------------------------------------------------------------------------
# Commands that do not need the store


def _serve(config: Config, args: argparse.Namespace) -> int:
    # Imported here: the server pulls in every protocol stack, which no admin command needs.
    from mailpost.app import serve

    return serve(config)


def _check_config(config: Config, args: argparse.Namespace) -> int:
    _check_tls_files(config)
    for line in describe_config(config):
        print(line)
    print("configuration OK")
    return EXIT_OK


def _check_tls_files(config: Config) -> None:
    """Configured certificate files must be readable now, not only when the server starts."""
    for key, path in (("tls.cert", config.tls.cert), ("tls.key", config.tls.key)):
        if path is None:
            continue
        try:
            with path.open("rb"):
                pass
        except OSError as exc:
            raise ConfigError(f"{key}: cannot read {path}: {exc.strerror or exc}") from exc


def describe_config(config: Config) -> list[str]:
    """Lines that say, for a human, what ``config`` will make the server do."""
    source = str(config.source) if config.source else "built-in development defaults"
    lines = [
        f"configuration: {source}",
        f"hostname:      {config.hostname}",
        f"data_dir:      {config.data_dir} ({config.data_dir.absolute()})",
        "listen:",
    ]
    for field in dataclasses.fields(config.listen):
        addresses = getattr(config.listen, field.name)
        lines.append(f"  {field.name:<12} {', '.join(addresses) if addresses else 'off'}")
    if config.tls.cert is None:
        lines.append(f"tls:           self-signed, created on first start in "
                     f"{config.cert_path.parent}")
    else:
        lines.append(f"tls:           cert {config.cert_path}, key {config.key_path}")
    changed = _changed_limits(config.limits)
    lines.append(f"limits:        {', '.join(changed) if changed else 'all defaults'}")
    lines.append(f"log level:     {config.log.level}")
    lines.append(f"pop3 APOP:     {'on' if config.pop3.apop else 'off'}")
    return lines


def _changed_limits(limits: LimitsConfig) -> list[str]:
    defaults = LimitsConfig()
    return [f"{field.name} = {getattr(limits, field.name)}"
            for field in dataclasses.fields(limits)
            if getattr(limits, field.name) != getattr(defaults, field.name)]


# ---------------------------------------------------------------------------------------------
# Store commands


def _with_store(action: StoreAction) -> Runner:
    """Wrap ``action`` into a runner that opens the store, runs it and closes the store."""
    def run(config: Config, args: argparse.Namespace) -> int:
        _prepare_input(args)
        config.data_dir.mkdir(parents=True, exist_ok=True)
        args.loaded_config = config
        asyncio.run(_run_on_store(config, action, args))
        return EXIT_OK
    return run


async def _run_on_store(config: Config, action: StoreAction, args: argparse.Namespace) -> None:
    # Imported here so that --help, check-config and usage errors do not load the database.
    from mailpost.store import open_store

    # Changes made here ring the running server's doorbell, so its IMAP sessions see them.
    bus = RelayingBus(config.data_dir)
    try:
        store = await open_store(config.data_dir, bus)
        try:
            await action(store, args)
        finally:
            await store.close()
    finally:
        bus.close()


def _prepare_input(args: argparse.Namespace) -> None:
    """Read and check the password and the quota before anything touches the disk."""
    if getattr(args, "password_stdin", False):
        args.password = read_password_line(sys.stdin)
    if getattr(args, "password", None) is not None:
        ops.validate_password(args.password)
    if getattr(args, "size", None) is not None:
        args.quota_bytes = ops.parse_size(args.size)


def read_password_line(stream: TextIO) -> str:
    """One line from ``stream`` without its line ending (``\\n`` or ``\\r\\n``)."""
    line = stream.readline()
    return line.removesuffix("\n").removesuffix("\r")


async def _domain_add(store: MailStore, args: argparse.Namespace) -> None:
    print(f"added domain {await ops.add_domain(store, args.domain)}")


async def _domain_list(store: MailStore, args: argparse.Namespace) -> None:
    for domain in await ops.list_domains(store):
        print(domain)


async def _domain_remove(store: MailStore, args: argparse.Namespace) -> None:
    print(f"removed domain {await ops.remove_domain(store, args.domain)}")


def _apop_key(config: Config) -> APOPKey | None:
    """The key that seals APOP secrets, when ``[pop3] apop`` is on (RFC 1939 §7)."""
    return APOPKey.for_data_dir(config.data_dir) if config.pop3.apop else None


async def _user_add(store: MailStore, args: argparse.Namespace) -> None:
    apop_key = _apop_key(args.loaded_config)
    account = await ops.add_user(store, args.address, args.password, args.quota_bytes,
                                 apop_key=apop_key)
    apop = ", APOP secret stored" if apop_key is not None else ""
    print(f"added user {account.address} (quota {ops.format_size(account.quota_bytes)}{apop})")


async def _user_passwd(store: MailStore, args: argparse.Namespace) -> None:
    apop_key = _apop_key(args.loaded_config)
    address = await ops.set_password(store, args.address, args.password, apop_key=apop_key)
    apop = " and its APOP secret" if apop_key is not None else ""
    print(f"changed the password of {address}{apop}")


async def _user_list(store: MailStore, args: argparse.Namespace) -> None:
    users = await ops.list_users(store)
    if not users:
        return
    rows = [("ADDRESS", "QUOTA", "USED", "MESSAGES")]
    rows += [(account.address, ops.format_size(account.quota_bytes),
              ops.format_usage(usage.size), str(usage.messages)) for account, usage in users]
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths)) + "  " + row[3])


async def _user_remove(store: MailStore, args: argparse.Namespace) -> None:
    print(f"removed user {await ops.remove_user(store, args.address)} and all its mail")


async def _user_quota(store: MailStore, args: argparse.Namespace) -> None:
    address = await ops.set_quota(store, args.address, args.quota_bytes)
    print(f"quota of {address} is now {ops.format_size(args.quota_bytes)}")


async def _alias_add(store: MailStore, args: argparse.Namespace) -> None:
    alias, target = await ops.add_alias(store, args.alias, args.target)
    print(f"added alias {alias} -> {target}")


async def _alias_list(store: MailStore, args: argparse.Namespace) -> None:
    for alias in await ops.list_aliases(store):
        print(f"{alias.address} -> {alias.target}")


async def _alias_remove(store: MailStore, args: argparse.Namespace) -> None:
    alias, target = await ops.remove_alias(store, args.alias, args.target)
    print(f"removed alias {alias}" + (f" -> {target}" if target else ""))


async def _queue_list(store: MailStore, args: argparse.Namespace) -> None:
    entries = await queue_ops.list_queue(store)
    if not entries:
        print("queue is empty")
        return
    rows = [("ID", "SENDER", "RECIPIENTS", "ATTEMPTS", "NEXT TRY (UTC)", "LAST ERROR")]
    rows += [(str(e.id), f"<{e.sender}>", ",".join(r.address for r in e.recipients),
              str(e.attempts), queue_ops.describe_time(e.next_attempt), e.last_error or "-")
             for e in entries]
    widths = [max(len(row[i]) for row in rows) for i in range(5)]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths)) + "  " + row[5])


async def _queue_show(store: MailStore, args: argparse.Namespace) -> None:
    detail = await queue_ops.show_entry(store, args.id)
    entry = detail.entry
    print(f"id:         {entry.id}\nsender:     <{entry.sender}>")
    print(f"created:    {queue_ops.describe_time(entry.created)}")
    print(f"attempts:   {entry.attempts}\nnext try:   "
          f"{queue_ops.describe_time(entry.next_attempt)}")
    print(f"last error: {entry.last_error or '-'}\nsize:       {entry.blob.size}")
    for recipient in entry.recipients:
        extra = f" NOTIFY={recipient.notify}" if recipient.notify else ""
        print(f"recipient:  <{recipient.address}>{extra}")
    print("\n" + detail.header)


async def _queue_flush(store: MailStore, args: argparse.Namespace) -> None:
    count = await queue_ops.flush(store, args.id)
    print(f"{count} queue entr{'y' if count == 1 else 'ies'} due now")


async def _queue_delete(store: MailStore, args: argparse.Namespace) -> None:
    await queue_ops.delete_entry(store, args.id)
    print(f"deleted queue entry {args.id} (no bounce is sent)")


# ---------------------------------------------------------------------------------------------
# Argument parsing

_SIZE_HELP = ("bytes, or a number with K, M, G or T (1024-based), e.g. 500M or 2G; "
              "0 or none for unlimited")


def build_parser() -> argparse.ArgumentParser:
    """The full ``mailpost`` grammar; each leaf command sets ``run`` to its runner."""
    # --config is accepted before or after the command; SUPPRESS keeps a later, absent
    # --config from overwriting one given earlier.
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", metavar="PATH", default=argparse.SUPPRESS,
                        help="configuration file (default: $MAILPOST_CONFIG, ./mailpost.toml)")
    parser = argparse.ArgumentParser(
        prog=PROG, description="mailpost: an SMTP, IMAP4 and POP3 mail server.")
    parser.add_argument("--config", metavar="PATH", default=None,
                        help="configuration file (default: $MAILPOST_CONFIG, ./mailpost.toml, "
                             "else built-in development defaults)")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(title="commands", dest="command", required=True,
                                     metavar="COMMAND")
    leaf = commands.add_parser("serve", parents=[common], help="run the mail server")
    leaf.set_defaults(run=_serve)
    leaf = commands.add_parser("check-config", parents=[common],
                               help="validate the configuration and summarise it")
    leaf.set_defaults(run=_check_config)
    _add_domain_commands(commands, common)
    _add_user_commands(commands, common)
    _add_alias_commands(commands, common)
    _add_queue_commands(commands, common)
    cli_mailauth.add_commands(commands, common)
    cli_deliver.add_commands(commands, common)
    return parser


# argparse does not export the type of the object add_subparsers returns.
_Commands: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"


def _group(commands: _Commands, name: str, help_text: str) -> _Commands:
    group = commands.add_parser(name, help=help_text, description=help_text)
    return group.add_subparsers(title="commands", dest=f"{name}_command", required=True,
                                metavar="COMMAND")


def _leaf(group: _Commands, common: argparse.ArgumentParser, name: str, help_text: str,
          action: StoreAction) -> argparse.ArgumentParser:
    leaf = group.add_parser(name, parents=[common], help=help_text, description=help_text)
    leaf.set_defaults(run=_with_store(action))
    return leaf


def _add_domain_commands(commands: _Commands, common: argparse.ArgumentParser) -> None:
    group = _group(commands, "domain", "manage local domains")
    _leaf(group, common, "add", "make DOMAIN a local domain",
          _domain_add).add_argument("domain", metavar="DOMAIN")
    _leaf(group, common, "list", "list local domains", _domain_list)
    _leaf(group, common, "remove", "remove a domain that has no users or aliases",
          _domain_remove).add_argument("domain", metavar="DOMAIN")


def _add_password_options(leaf: argparse.ArgumentParser) -> None:
    source = leaf.add_mutually_exclusive_group(required=True)
    source.add_argument("--password", metavar="P",
                        help="the password (visible to other local users in the process list)")
    source.add_argument("--password-stdin", action="store_true",
                        help="read the password as one line from standard input")


def _add_user_commands(commands: _Commands, common: argparse.ArgumentParser) -> None:
    group = _group(commands, "user", "manage user accounts")
    leaf = _leaf(group, common, "add", "create an account in a local domain", _user_add)
    leaf.add_argument("address", metavar="ADDRESS")
    _add_password_options(leaf)
    leaf.add_argument("--quota", dest="size", metavar="SIZE", default=None,
                      help=f"storage quota: {_SIZE_HELP} (default: unlimited)")
    leaf.set_defaults(quota_bytes=None)
    leaf = _leaf(group, common, "passwd", "change the password of an account", _user_passwd)
    leaf.add_argument("address", metavar="ADDRESS")
    _add_password_options(leaf)
    _leaf(group, common, "list", "list accounts with quota and usage", _user_list)
    _leaf(group, common, "remove", "remove an account and all its mail",
          _user_remove).add_argument("address", metavar="ADDRESS")
    leaf = _leaf(group, common, "quota", "set the storage quota of an account", _user_quota)
    leaf.add_argument("address", metavar="ADDRESS")
    leaf.add_argument("size", metavar="SIZE", help=_SIZE_HELP)


def _add_alias_commands(commands: _Commands, common: argparse.ArgumentParser) -> None:
    group = _group(commands, "alias", "manage aliases (forwarding addresses)")
    leaf = _leaf(group, common, "add", "deliver mail for ALIAS to TARGET", _alias_add)
    leaf.add_argument("alias", metavar="ALIAS",
                      help="an address in a local domain, or @domain for a catch-all")
    leaf.add_argument("target", metavar="TARGET", help="a local or remote address")
    _leaf(group, common, "list", "list aliases", _alias_list)
    leaf = _leaf(group, common, "remove", "remove an alias, or one of its targets", _alias_remove)
    leaf.add_argument("alias", metavar="ALIAS")
    leaf.add_argument("target", metavar="TARGET", nargs="?", default=None,
                      help="remove only this target (default: all of them)")


def _add_queue_commands(commands: _Commands, common: argparse.ArgumentParser) -> None:
    group = _group(commands, "queue", "inspect and manage the outbound mail queue")
    _leaf(group, common, "list", "list queued messages", _queue_list)
    _leaf(group, common, "show", "show one queued message", _queue_show).add_argument(
        "id", metavar="ID", type=int)
    _leaf(group, common, "flush", "retry one queued message (default: all) now",
          _queue_flush).add_argument("id", metavar="ID", type=int, nargs="?", default=None)
    _leaf(group, common, "delete", "remove a queued message without a bounce",
          _queue_delete).add_argument("id", metavar="ID", type=int)


# ---------------------------------------------------------------------------------------------
# Entry point


def _fail(message: str) -> int:
    print(f"{PROG}: error: {message}", file=sys.stderr)
    return EXIT_ERROR


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``mailpost`` with ``argv`` (default: ``sys.argv[1:]``); returns the exit status."""
    args = build_parser().parse_args(argv)
    run: Runner = args.run
    try:
        return run(load(args.config), args)
    except (AdminError, ConfigError, APOPKeyError) as exc:
        return _fail(str(exc))
    except StoreError as exc:
        return _fail(f"store: {exc or type(exc).__name__}")
    except OSError as exc:
        where = f" {exc.filename}" if exc.filename else ""
        return _fail(f"cannot access{where}: {exc.strerror or exc}")
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
