"""Recipient resolution: where does mail for an address go?

Every envelope recipient is resolved before it is accepted (at RCPT time, so unknown users are
refused with 550 5.1.1 instead of accepted and bounced: no backscatter, security catalogue B3).
The answer is protocol-neutral: a set of local accounts and remote addresses, or a
:class:`Refusal` that the protocol turns into its own reply.

Lookup order for a local domain: an account with that address; an alias (possibly several
targets, recursively, to a bounded depth); the same two for the address without its
``+detail`` (sub-addressing); finally the domain's catch-all alias ``@domain``.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from mailpost.store.interface import DirectoryStore
from mailpost.store.types import Account

MAX_ALIAS_DEPTH = 8
MAX_EXPANSION = 1000
SUBADDRESS_DELIMITER = "+"


class Refusal(enum.Enum):
    UNKNOWN_USER = "unknown-user"
    RELAY_DENIED = "relay-denied"
    ROUTING_TRICK = "routing-trick"
    ALIAS_LOOP = "alias-loop"


@dataclass
class Resolution:
    """Local accounts and remote addresses one envelope recipient expands to."""

    accounts: dict[int, Account] = field(default_factory=dict)
    remote: list[str] = field(default_factory=list)

    def merge(self, other: Resolution) -> None:
        self.accounts.update(other.accounts)
        for address in other.remote:
            if address not in self.remote:
                self.remote.append(address)

    @property
    def size(self) -> int:
        return len(self.accounts) + len(self.remote)


def split_address(address: str) -> tuple[str, str]:
    local, _, domain = address.rpartition("@")
    return local, domain.lower()


def has_routing_trick(local_part: str) -> bool:
    """``%`` hacks, bang paths and embedded ``@`` route mail onwards (RFC 2505 §2.1)."""
    return any(ch in local_part for ch in "%!@")


class RecipientResolver:
    def __init__(self, directory: DirectoryStore, hostname: str) -> None:
        self._directory = directory
        self._hostname = hostname.lower()

    async def postmaster_address(self) -> str | None:
        """RFC 5321 §4.5.1: a bare ``<postmaster>`` must be accepted; it goes to postmaster
        at the server's own domain when that is local, else at the first local domain."""
        domains = await self._directory.list_domains()
        if not domains:
            return None
        for domain in domains:
            if self._hostname == domain or self._hostname.endswith("." + domain):
                return f"postmaster@{domain}"
        return f"postmaster@{domains[0]}"

    async def resolve(self, address: str, *, may_relay: bool) -> Resolution | Refusal:
        """Resolve one envelope recipient (``local@domain``, as parsed from RCPT TO)."""
        local, domain = split_address(address)
        if not await self._directory.is_local_domain(domain):
            if not may_relay:
                return Refusal.RELAY_DENIED
            if has_routing_trick(local):
                return Refusal.ROUTING_TRICK
            return Resolution(remote=[address])
        if has_routing_trick(local):
            return Refusal.ROUTING_TRICK
        result = await self._expand(f"{local.lower()}@{domain}", 0, set(), catch_all=True)
        if isinstance(result, Refusal):
            return result
        if result.size == 0:
            return Refusal.UNKNOWN_USER
        return result

    async def _expand(self, address: str, depth: int, seen: set[str],
                      catch_all: bool) -> Resolution | Refusal:
        if depth > MAX_ALIAS_DEPTH or len(seen) > MAX_EXPANSION:
            return Refusal.ALIAS_LOOP
        if address in seen:
            return Resolution()  # a cycle back to an address already expanded adds nothing
        seen.add(address)
        local, domain = split_address(address)
        if not await self._directory.is_local_domain(domain):
            return Resolution(remote=[address])
        account = await self._directory.get_account(address)
        if account is not None:
            return Resolution(accounts={account.id: account})
        targets = await self._directory.alias_targets(address)
        if not targets and SUBADDRESS_DELIMITER in local:
            base = local.split(SUBADDRESS_DELIMITER, 1)[0]
            if base:
                return await self._expand(f"{base}@{domain}", depth + 1, seen, catch_all)
        if not targets and catch_all:
            targets = await self._directory.alias_targets(f"@{domain}")
        result = Resolution()
        for target in targets:
            expanded = await self._expand(target.lower(), depth + 1, seen, catch_all)
            if isinstance(expanded, Refusal):
                return expanded
            result.merge(expanded)
        return result

    async def sender_allowed(self, account: Account, sender: str) -> bool:
        """May ``account`` use ``sender`` as its envelope (and From) address?

        Its own address, its sub-addresses (``user+tag@``) and every alias that delivers to
        it (Postfix reject_sender_login_mismatch; security catalogue R9). The null sender is
        allowed (MDNs and the like).
        """
        if sender == "":
            return True
        local, domain = split_address(sender)
        candidate = f"{local.lower()}@{domain}"
        own_local, own_domain = split_address(account.address)
        if candidate == account.address:
            return True
        if domain == own_domain and local.lower().startswith(own_local + SUBADDRESS_DELIMITER):
            return True
        if not await self._directory.is_local_domain(domain):
            return False
        # Catch-alls are not consulted: receiving "anything@domain" must not mean being
        # allowed to send as anyone of the domain.
        expansion = await self._expand(candidate, 0, set(), catch_all=False)
        return isinstance(expansion, Resolution) and account.id in expansion.accounts
