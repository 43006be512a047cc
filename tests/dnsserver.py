"""A small authoritative DNS server on a loopback UDP port, for tests that need real lookups.

The server answers from a zone table (owner name and type to a list of presentation-format
values) on its own thread, so that it serves servers running on other threads and event loops
alike, and it keeps running while those are stopped and started again. Names it does not know
get NXDOMAIN; a known name without records of the asked type gets an empty NOERROR answer
(RFC 2308 §2.2 "NODATA"). TXT values longer than one character-string are split into strings
of at most 255 octets (RFC 1035 §3.3.14), as a DKIM RSA key record must be.
"""

from __future__ import annotations

import socketserver
import threading
from collections.abc import Mapping, Sequence
from types import TracebackType
from typing import Self

import dns.exception
import dns.flags
import dns.message
import dns.rcode
import dns.rdatatype
import dns.rrset

TTL = 60
MAX_STRING = 255


def txt_presentation(value: str) -> str:
    """A TXT value as quoted character-strings of at most 255 octets each."""
    chunks = [value[i:i + MAX_STRING] for i in range(0, len(value), MAX_STRING)] or [""]
    return " ".join('"' + chunk.replace("\\", "\\\\").replace('"', '\\"') + '"'
                    for chunk in chunks)


def _absolute(name: str) -> str:
    return name.lower().rstrip(".") + "."


class Zone:
    """Records keyed by (absolute lower-case name, type)."""

    def __init__(self, records: Mapping[tuple[str, str], Sequence[str]] | None = None) -> None:
        self.records: dict[tuple[str, str], list[str]] = {}
        for (name, rdtype), values in (records or {}).items():
            for value in values:
                self.add(name, rdtype, value)

    def add(self, name: str, rdtype: str, value: str) -> None:
        text = txt_presentation(value) if rdtype.upper() == "TXT" else value
        self.records.setdefault((_absolute(name), rdtype.upper()), []).append(text)

    def knows(self, name: str) -> bool:
        return any(owner == name for owner, _ in self.records)

    def answer(self, query: dns.message.Message) -> dns.message.Message:
        response = dns.message.make_response(query)
        response.flags |= dns.flags.AA
        question = query.question[0]
        name = question.name.to_text().lower()
        values = self.records.get((name, dns.rdatatype.to_text(question.rdtype)))
        if values:
            rdtype = dns.rdatatype.to_text(question.rdtype)
            response.answer.append(dns.rrset.from_text_list(question.name, TTL, "IN", rdtype,
                                                            values))
        elif not self.knows(name):
            response.set_rcode(dns.rcode.NXDOMAIN)
        return response


class _Handler(socketserver.BaseRequestHandler):
    server: _UDPServer

    def handle(self) -> None:
        data, sock = self.request
        try:
            query = dns.message.from_wire(data)
        except dns.exception.DNSException:  # not a DNS message: a real server drops it
            return
        sock.sendto(self.server.zone.answer(query).to_wire(), self.client_address)


class _UDPServer(socketserver.UDPServer):
    def __init__(self, address: tuple[str, int], zone: Zone) -> None:
        super().__init__(address, _Handler)
        self.zone = zone


class DNSServer:
    """``with DNSServer(zone) as dns_server:`` serves ``zone`` on ``dns_server.address``."""

    def __init__(self, zone: Zone, host: str = "127.0.0.1") -> None:
        self.zone = zone
        self._server = _UDPServer((host, 0), zone)
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        kwargs={"poll_interval": 0.05}, daemon=True)

    @property
    def address(self) -> str:
        """``"host:port"``, as ``[dns] nameservers`` wants it."""
        host, port = self._server.socket.getsockname()[:2]
        return f"{host}:{port}"

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)
