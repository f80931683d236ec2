"""A small authoritative DNS server for tests (dnspython), answering from a JSON zone file.

Run as a real process: ``python dns_server.py HOST PORT ZONE.json``. The zone is re-read on every
query so a test changes the answer by rewriting the file. Listens on UDP and TCP.
Zone: {"name.": {"A": ["127.0.0.2"], "AAAA": ["::1"], "SRV": [[0, 0, 8080, "pod-0.name."]]}}
"""

from __future__ import annotations

import json
import socketserver
import sys
import threading
from pathlib import Path

import dns.message
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset

ZONE = Path(sys.argv[3]) if len(sys.argv) > 3 else Path("zone.json")


def answer(wire: bytes) -> bytes:
    query = dns.message.from_wire(wire)
    response = dns.message.make_response(query)
    response.flags |= 0x0400  # AA: authoritative
    try:
        zone = json.loads(ZONE.read_text())
    except (OSError, ValueError):
        response.set_rcode(dns.rcode.SERVFAIL)
        return response.to_wire()
    for question in query.question:
        name = question.name.to_text().lower()
        records = zone.get(name)
        if records is None:
            response.set_rcode(dns.rcode.NXDOMAIN)
            continue
        rdtype = dns.rdatatype.to_text(question.rdtype)
        values = records.get(rdtype, [])
        if not values:
            continue  # NOERROR, no answer
        texts = [" ".join(map(str, v)) if isinstance(v, list) else v for v in values]
        response.answer.append(
            dns.rrset.from_text_list(question.name, 1, dns.rdataclass.IN, question.rdtype, texts)
        )
    return response.to_wire()


class Udp(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        data, sock = self.request
        sock.sendto(answer(data), self.client_address)


class Tcp(socketserver.StreamRequestHandler):
    def handle(self) -> None:
        size = int.from_bytes(self.rfile.read(2), "big")
        reply = answer(self.rfile.read(size))
        self.wfile.write(len(reply).to_bytes(2, "big") + reply)


def main() -> None:
    host, port = sys.argv[1], int(sys.argv[2])
    udp = socketserver.ThreadingUDPServer((host, port), Udp)
    tcp = socketserver.ThreadingTCPServer((host, port), Tcp)
    threading.Thread(target=udp.serve_forever, daemon=True).start()
    print(f"dns server on {host}:{port}", flush=True)
    tcp.serve_forever()


if __name__ == "__main__":
    main()
