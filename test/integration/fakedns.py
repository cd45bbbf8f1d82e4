"""A DNS server the tests control: UDP on 127.0.0.1, an ephemeral port,
answers encoded by hand (RFC 1035) so that a test decides, per name, the
addresses, their TTL, NXDOMAIN, or no answer at all (a hung resolver).

    dns = FakeDNS()                       # started, serving in a thread
    dns.set("db.pgpulse.test", ["127.0.0.1"], ttl=30)
    dns.set("late.pgpulse.test", ["127.0.0.1"], delay=1.0)   # answered a second late
    dns.set_nxdomain("gone.pgpulse.test")
    dns.hang("slow.pgpulse.test")         # queries are counted, never answered
    dns.nameserver                        # "127.0.0.1:<port>", for dns_nameservers
    dns.set_soa("pgpulse.test", 7)        # the zone's SOA, with serial 7
    dns.queries("db.pgpulse.test")        # A and AAAA queries received so far
    dns.close()

Names not set are answered NXDOMAIN. Only A records are served: AAAA queries for a known name get an empty
NOERROR answer (the name exists, without IPv6 addresses), as a real zone
with IPv4 servers only would give.
"""

import socket
import struct
import threading

QTYPE_A = 1
QTYPE_SOA = 6
QTYPE_AAAA = 28
RCODE_NXDOMAIN = 3


def _encode_name(name):
    return b"".join(bytes([len(label)]) + label.encode("ascii") for label in name.split(".")) + b"\0"


def _read_name(packet, pos):
    labels = []
    while True:
        n = packet[pos]
        pos += 1
        if n == 0:
            return ".".join(labels).lower(), pos
        labels.append(packet[pos:pos + n].decode("ascii"))
        pos += n


class FakeDNS:
    def __init__(self):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self._lock = threading.Lock()
        self._records = {}      # name -> ("a", [addrs], ttl) | ("nxdomain",) | ("hang",)
        self._queries = {}      # name -> count
        self._soa = {}          # zone -> serial
        self._closed = False
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    # -- what to answer

    def set(self, name, addrs, ttl=30, delay=0):
        """Answer A queries for name with addrs; after `delay` seconds if set."""
        with self._lock:
            self._records[name.lower()] = ("a", list(addrs), ttl, delay)

    def set_soa(self, zone, serial):
        """Answer SOA queries for zone with this serial."""
        with self._lock:
            self._soa[zone.lower()] = serial

    def set_nxdomain(self, name):
        with self._lock:
            self._records[name.lower()] = ("nxdomain",)

    def hang(self, name):
        with self._lock:
            self._records[name.lower()] = ("hang",)

    def queries(self, name, qtype=QTYPE_A):
        """How many queries of qtype (A by default) arrived for name."""
        with self._lock:
            return self._queries.get((name.lower(), qtype), 0)

    @property
    def nameserver(self):
        return f"127.0.0.1:{self.port}"

    def close(self):
        self._closed = True
        self.sock.close()

    # -- the server

    def _serve(self):
        while not self._closed:
            try:
                packet, peer = self.sock.recvfrom(4096)
            except OSError:
                return
            reply, delay = self._answer(packet)
            if reply is None:
                continue
            if delay:
                threading.Timer(delay, self._send, (reply, peer)).start()
            else:
                self._send(reply, peer)

    def _send(self, reply, peer):
        try:
            self.sock.sendto(reply, peer)
        except OSError:
            pass

    def _answer(self, packet):
        if len(packet) < 12:
            return None, 0
        qid, flags, qdcount = struct.unpack("!HHH", packet[:6])
        if qdcount != 1:
            return None, 0
        name, pos = _read_name(packet, 12)
        qtype, qclass = struct.unpack("!HH", packet[pos:pos + 4])
        question = packet[12:pos + 4]
        with self._lock:
            self._queries[(name, qtype)] = self._queries.get((name, qtype), 0) + 1
            record = self._records.get(name)
            serial = self._soa.get(name)
        rd = flags & 0x0100
        if qtype == QTYPE_SOA and serial is not None:
            rdata = (_encode_name("ns." + name) + _encode_name("admin." + name)
                     + struct.pack("!IIIII", serial, 3600, 600, 86400, 60))
            answer = b"\xc0\x0c" + struct.pack("!HHIH", QTYPE_SOA, 1, 60, len(rdata)) + rdata
            return self._reply(qid, rd, 0, question, [answer]), 0
        if record is not None and record[0] == "hang":
            return None, 0
        if record is None or record[0] == "nxdomain":
            return self._reply(qid, rd, RCODE_NXDOMAIN, question, []), 0
        _, addrs, ttl, delay = record
        answers = []
        if qtype == QTYPE_A:
            for a in addrs:
                answers.append(b"\xc0\x0c" + struct.pack("!HHIH", QTYPE_A, 1, ttl, 4)
                               + socket.inet_aton(a))
        return self._reply(qid, rd, 0, question, answers), delay

    @staticmethod
    def _reply(qid, rd, rcode, question, answers):
        # QR=1, AA=1, RA=1, the client's RD echoed
        flags = 0x8000 | 0x0400 | rd | 0x0080 | rcode
        header = struct.pack("!HHHHHH", qid, flags, 1, len(answers), 0, 0)
        return header + question + b"".join(answers)
