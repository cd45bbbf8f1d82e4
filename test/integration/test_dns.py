"""Server host names: resolved with c-ares inside the event loop, cached for
their TTL (at most dns_max_ttl), "no such name" cached for dns_nxdomain_ttl,
several addresses used round robin, host lists with load_balance_hosts, and
a changed address retiring the old server connections.

Every test points pgpulse at a DNS server of its own (fakedns.FakeDNS, UDP
on 127.0.0.1) through dns_nameservers, with a resolv.conf that has no
search domains, so the test decides every answer and counts every query.
PostgreSQL listens on 127.0.0.1 only; a second address of the same server,
127.0.0.2, is a TCP relay the test runs (Relay below).
"""

import socket
import threading
import time

import psycopg
import pytest

from fakedns import FakeDNS
from pgpulse_harness import raw_startup, wait_until

USERS = {"app": "app_pw", "admin": "admin_pw"}


def config(databases, extra=""):
    return f"""\
[databases]
{databases}
[pgpulse]
listen_addr = 127.0.0.1
listen_port = {{port}}
unix_socket_dir = {{dir}}
auth_type = trust
auth_file = {{auth_file}}
admin_users = admin
pool_mode = session
default_pool_size = 4
server_login_retry = 0
resolv_conf = {{dir}}/resolv.conf
{extra}"""


@pytest.fixture
def dns():
    server = FakeDNS()
    yield server
    server.close()


def start(pgpulse, dns, databases, extra=""):
    pp = pgpulse(config(databases, f"dns_nameservers = {dns.nameserver}\n" + extra), USERS, start=False)
    with open(f"{pp.dir}/resolv.conf", "w") as f:
        f.write("nameserver 127.0.0.1\n")   # replaced by dns_nameservers; no search domains
    pp.start()
    return pp


def dns_hosts(pp):
    return {r["hostname"]: r for r in pp.show("DNS_HOSTS")}


def server_addrs(pp, database):
    return sorted(r["addr"] for r in pp.show("SERVERS") if r["database"] == database)


def startup_error(pp, database):
    """Log in on a raw socket; the ErrorResponse's fields (C, M, ...)."""
    with socket.create_connection(("127.0.0.1", pp.port), timeout=20) as s:
        status, fields = raw_startup(s, database=database)
    assert status == "error", f"login to {database} unexpectedly worked"
    return fields


class Relay:
    """A TCP listener on (host, port) that relays every connection to
    127.0.0.1:port: PostgreSQL seen at a second address."""

    def __init__(self, host, port):
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((host, port))
        self.sock.listen(64)
        self.target = ("127.0.0.1", port)
        self.accepted = 0
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                client, _ = self.sock.accept()
            except OSError:
                return
            self.accepted += 1
            try:
                server = socket.create_connection(self.target)
            except OSError:
                client.close()
                continue
            for a, b in ((client, server), (server, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(src, dst):
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def close(self):
        try:
            self.sock.shutdown(socket.SHUT_RDWR)   # wakes the thread blocked in accept()
        except OSError:
            pass
        self.sock.close()


@pytest.fixture
def relay(pg):
    r = Relay("127.0.0.2", pg.port)
    yield r
    r.close()


def hold_sessions(pp, database, n):
    """n clients, each holding its own server connection (session mode)."""
    conns = []
    for _ in range(n):
        c = pp.connect(dbname=database, autocommit=True)
        assert c.execute("SELECT 1").fetchone() == (1,)
        conns.append(c)
    return conns


# ---------------------------------------------------------------- cache

def test_host_name_is_resolved_once_and_served_from_the_cache_for_its_ttl(pgpulse, pg, dns):
    dns.set("db.pgpulse.test", ["127.0.0.1"], ttl=30)
    pp = start(pgpulse, dns, f"named = host=db.pgpulse.test port={pg.port} dbname=appdb")
    conns = hold_sessions(pp, "named", 3)
    assert server_addrs(pp, "named") == ["127.0.0.1"] * 3
    assert dns.queries("db.pgpulse.test") == 1, "three connections, one lookup"
    entry = dns_hosts(pp)["db.pgpulse.test"]
    assert entry["addrs"] == "127.0.0.1"
    assert 0 < entry["ttl"] <= 30
    for c in conns:
        c.close()


def test_dns_max_ttl_caps_the_answer_ttl_and_an_expired_name_is_looked_up_again(pgpulse, pg, dns):
    dns.set("db.pgpulse.test", ["127.0.0.1"], ttl=3600)
    pp = start(pgpulse, dns, f"named = host=db.pgpulse.test port={pg.port} dbname=appdb",
               "dns_max_ttl = 1\n")
    hold_sessions(pp, "named", 1)
    assert dns_hosts(pp)["db.pgpulse.test"]["ttl"] == 1
    wait_until(lambda: dns_hosts(pp)["db.pgpulse.test"]["ttl"] == 0, 5, "the entry to expire")
    assert dns.queries("db.pgpulse.test") == 1
    hold_sessions(pp, "named", 1)   # a second server connection
    assert dns.queries("db.pgpulse.test") == 2


def test_unknown_host_fails_the_client_with_08001_naming_the_host(pgpulse, pg, dns):
    dns.set_nxdomain("gone.pgpulse.test")
    pp = start(pgpulse, dns, f"gone = host=gone.pgpulse.test port={pg.port} dbname=appdb")
    err = startup_error(pp, "gone")
    assert err["C"] == "08001"
    assert err["M"] == 'could not resolve host "gone.pgpulse.test": Domain name not found'


def test_nxdomain_is_cached_for_dns_nxdomain_ttl(pgpulse, pg, dns):
    dns.set_nxdomain("gone.pgpulse.test")
    pp = start(pgpulse, dns, f"gone = host=gone.pgpulse.test port={pg.port} dbname=appdb",
               "dns_nxdomain_ttl = 2\n")
    for _ in range(3):
        assert startup_error(pp, "gone")["C"] == "08001"
    assert dns.queries("gone.pgpulse.test") == 1, "the negative answer is cached"
    entry = dns_hosts(pp)["gone.pgpulse.test"]
    assert entry["addrs"] == "" and 0 < entry["ttl"] <= 2
    # once the negative entry has expired, the name is asked again
    dns.set("gone.pgpulse.test", ["127.0.0.1"], ttl=30)
    wait_until(lambda: dns_hosts(pp)["gone.pgpulse.test"]["ttl"] == 0, 5, "the negative entry to expire")
    hold_sessions(pp, "gone", 1)
    assert dns.queries("gone.pgpulse.test") == 2


def test_literal_addresses_and_unix_sockets_never_ask_the_resolver(pgpulse, pg, dns):
    pp = start(pgpulse, dns, f"ip = host=127.0.0.1 port={pg.port} dbname=appdb\n"
                             f"sock = host={pg.socket_dir} port={pg.port} dbname=appdb")
    hold_sessions(pp, "ip", 1)
    hold_sessions(pp, "sock", 1)
    assert pp.show("DNS_HOSTS") == []
    lists = {r["list"]: r["items"] for r in pp.show("LISTS")}
    assert lists["dns_names"] == 0


def etc_hosts_first_address(name):
    try:
        with open("/etc/hosts") as f:
            for line in f:
                fields = line.split("#")[0].split()
                if len(fields) > 1 and name in fields[1:]:
                    return fields[0]
    except OSError:
        pass
    return None


def test_name_in_etc_hosts_is_answered_without_asking_the_name_server(pgpulse, pg, dns):
    if etc_hosts_first_address("localhost") != "127.0.0.1":
        pytest.skip("/etc/hosts does not map localhost to 127.0.0.1 first")
    pp = start(pgpulse, dns, f"local = host=localhost port={pg.port} dbname=appdb")
    hold_sessions(pp, "local", 1)
    assert dns_hosts(pp)["localhost"]["addrs"].split(",")[0] == "127.0.0.1"
    assert dns.queries("localhost") == 0 and dns.queries("localhost", 28) == 0


# ---------------------------------------------------------------- never stalls

def test_clients_arriving_during_a_lookup_share_it(pgpulse, pg, dns):
    dns.set("late.pgpulse.test", ["127.0.0.1"], ttl=30, delay=1.0)
    pp = start(pgpulse, dns, f"late = host=late.pgpulse.test port={pg.port} dbname=appdb")
    results = []

    def client():
        with psycopg.connect(pp.dsn(dbname="late"), autocommit=True) as c:
            results.append(c.execute("SELECT 1").fetchone())

    threads = [threading.Thread(target=client) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(20)
    assert results == [(1,)] * 4
    assert dns.queries("late.pgpulse.test") == 1, "one lookup served the four clients"


def test_hung_lookup_for_one_database_does_not_stall_the_others(pgpulse, pg, dns):
    dns.hang("slow.pgpulse.test")
    dns.set("fast.pgpulse.test", ["127.0.0.1"], ttl=30)
    pp = start(pgpulse, dns,
               f"slow = host=slow.pgpulse.test port={pg.port} dbname=appdb\n"
               f"fast = host=fast.pgpulse.test port={pg.port} dbname=appdb\n"
               f"ip = host=127.0.0.1 port={pg.port} dbname=appdb",
               "query_wait_timeout = 3\n")
    result = {}

    def stuck_client():
        start_at = time.monotonic()
        result["fields"] = startup_error(pp, "slow")
        result["waited"] = time.monotonic() - start_at

    t = threading.Thread(target=stuck_client)
    t.start()
    wait_until(lambda: dns.queries("slow.pgpulse.test") >= 1, 5, "the lookup of slow.pgpulse.test")
    lists = {r["list"]: r["items"] for r in pp.show("LISTS")}
    assert lists["dns_queries"] == 1, "the lookup is in flight"
    # while it hangs, the other databases serve one new connection after another
    for i in range(10):
        began = time.monotonic()
        with psycopg.connect(pp.dsn(dbname="fast" if i % 2 else "ip"), autocommit=True) as c:
            assert c.execute("SELECT 1").fetchone() == (1,)
        # generous for a loaded machine; a loop stalled by the lookup would wait it out (forever)
        assert time.monotonic() - began < 5.0
    assert t.is_alive(), "the client of the hung database is still waiting"
    t.join(20)
    # the wait is bounded by the existing timeout for waiting clients
    assert 2.5 < result["waited"] < 10
    assert result["fields"]["C"] == "08P01"
    assert result["fields"]["M"].startswith("query_wait_timeout"), result["fields"]


# ---------------------------------------------------------------- round robin

def test_addresses_of_one_name_are_used_round_robin(pgpulse, pg, dns, relay):
    dns.set("two.pgpulse.test", ["127.0.0.1", "127.0.0.2"], ttl=30)
    pp = start(pgpulse, dns, f"two = host=two.pgpulse.test port={pg.port} dbname=appdb")
    hold_sessions(pp, "two", 4)
    assert server_addrs(pp, "two") == ["127.0.0.1", "127.0.0.1", "127.0.0.2", "127.0.0.2"]
    assert dns_hosts(pp)["two.pgpulse.test"]["addrs"] == "127.0.0.1,127.0.0.2"
    assert relay.accepted == 2


def test_refused_address_of_a_name_is_skipped_for_its_next_address(pgpulse, pg, dns):
    # 127.0.0.3 has nothing listening: each connection sent there goes on to 127.0.0.1
    dns.set("half.pgpulse.test", ["127.0.0.3", "127.0.0.1"], ttl=30)
    pp = start(pgpulse, dns, f"half = host=half.pgpulse.test port={pg.port} dbname=appdb")
    hold_sessions(pp, "half", 4)
    assert server_addrs(pp, "half") == ["127.0.0.1"] * 4
    assert "Connection refused; trying the next address" in pp.log()


def test_host_list_round_robin_alternates_between_hosts(pgpulse, pg, dns, relay):
    pp = start(pgpulse, dns, f"both = host=127.0.0.1,127.0.0.2 port={pg.port} dbname=appdb")
    hold_sessions(pp, "both", 4)
    assert server_addrs(pp, "both") == ["127.0.0.1", "127.0.0.1", "127.0.0.2", "127.0.0.2"]


def test_host_list_mixes_names_and_addresses_with_a_port_each(pgpulse, pg, dns, relay):
    dns.set("db.pgpulse.test", ["127.0.0.2"], ttl=30)
    pp = start(pgpulse, dns,
               f"mixed = host=127.0.0.1,db.pgpulse.test port={pg.port},{pg.port} dbname=appdb")
    hold_sessions(pp, "mixed", 4)
    # while the name was looked up, round robin went on to the next host
    assert set(server_addrs(pp, "mixed")) == {"127.0.0.1", "127.0.0.2"}
    assert dns.queries("db.pgpulse.test") == 1


def test_load_balance_hosts_disable_stays_on_one_host_and_moves_on_after_a_failure(pgpulse, pg, dns):
    # 127.0.0.3 has nothing listening: the first connection fails, the database moves on
    pp = start(pgpulse, dns,
               f"failover = host=127.0.0.3,127.0.0.1 port={pg.port} dbname=appdb "
               f"load_balance_hosts=disable")
    err = startup_error(pp, "failover")
    assert err["C"] == "08006" and "127.0.0.3" in err["M"], err
    hold_sessions(pp, "failover", 3)
    assert server_addrs(pp, "failover") == ["127.0.0.1"] * 3


def test_load_balance_hosts_disable_moves_on_from_a_host_that_does_not_resolve(pgpulse, pg, dns):
    pp = start(pgpulse, dns,
               f"failover = host=gone.pgpulse.test,127.0.0.1 port={pg.port} dbname=appdb "
               f"load_balance_hosts=disable")
    err = startup_error(pp, "failover")
    assert (err["C"], err["M"]) == ("08001", 'could not resolve host "gone.pgpulse.test": Domain name not found')
    hold_sessions(pp, "failover", 2)
    assert server_addrs(pp, "failover") == ["127.0.0.1"] * 2


# ---------------------------------------------------------------- address change

def test_changed_address_retires_old_servers_as_they_are_released(pgpulse, pg, dns, relay):
    dns.set("moving.pgpulse.test", ["127.0.0.1"], ttl=1)
    pp = start(pgpulse, dns, f"moving = host=moving.pgpulse.test port={pg.port} dbname=appdb",
               "pool_mode = transaction\n")
    busy = pp.connect(dbname="moving")
    busy.execute("SELECT 1")              # a transaction stays open: its server is held
    idle = pp.connect(dbname="moving")
    idle.execute("SELECT 1")
    idle.commit()                         # its server goes back to the pool, idle
    assert server_addrs(pp, "moving") == ["127.0.0.1", "127.0.0.1"]

    # the pool has servers: the expired name is looked up again without a new connection
    dns.set("moving.pgpulse.test", ["127.0.0.2"], ttl=1)
    wait_until(lambda: dns_hosts(pp)["moving.pgpulse.test"]["addrs"] == "127.0.0.2", 5,
               "the new address in SHOW DNS_HOSTS")
    # the idle server at the old address closes; the busy one finishes its transaction there
    wait_until(lambda: server_addrs(pp, "moving") == ["127.0.0.1"], 5, "the idle old server to close")
    assert busy.execute("SELECT 2").fetchone() == (2,)
    busy.commit()
    wait_until(lambda: server_addrs(pp, "moving") == [], 5, "the released old server to close")
    # new server connections go to the new address
    idle.execute("SELECT 3")
    assert server_addrs(pp, "moving") == ["127.0.0.2"]
    assert relay.accepted == 1
    idle.commit()


def test_a_zone_serial_change_looks_its_names_up_again_before_their_ttl(pgpulse, pg, dns, relay):
    """dns_zone_check_period = 1: the name's TTL is an hour, yet when its
    zone's SOA serial moves, pgpulse looks it up again at once, sees the new
    address, and new server connections go there. Without a serial change
    nothing is asked again."""
    dns.set("zoned.pgpulse.test", ["127.0.0.1"], ttl=3600)
    dns.set_soa("pgpulse.test", 1)
    pp = start(pgpulse, dns, f"zoned = host=zoned.pgpulse.test port={pg.port} dbname=appdb",
               "pool_mode = transaction\ndns_max_ttl = 3600\ndns_zone_check_period = 1\n")
    conn = pp.connect(dbname="zoned")
    conn.execute("SELECT 1")
    conn.commit()
    assert server_addrs(pp, "zoned") == ["127.0.0.1"]
    # two periods with the same serial: SOA asked, the name is not
    wait_until(lambda: dns.queries("pgpulse.test", qtype=6) >= 3, 10, "three SOA queries")
    assert dns.queries("zoned.pgpulse.test") == 1
    zones = {r["zonename"]: r for r in pp.show("DNS_ZONES")}
    assert zones["pgpulse.test"]["serial"] == 1 and zones["pgpulse.test"]["count"] == 1, zones

    dns.set("zoned.pgpulse.test", ["127.0.0.2"], ttl=3600)
    dns.set_soa("pgpulse.test", 2)
    wait_until(lambda: dns_hosts(pp)["zoned.pgpulse.test"]["addrs"] == "127.0.0.2", 10,
               "the new address after the serial moved")
    assert "zone pgpulse.test serial changed 1 -> 2" in pp.log()
    wait_until(lambda: server_addrs(pp, "zoned") == [], 5, "the idle old server to close")
    conn.execute("SELECT 2")
    assert server_addrs(pp, "zoned") == ["127.0.0.2"]
    conn.commit()
