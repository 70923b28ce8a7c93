"""portal.security.urlguard: save-time URL checks and the connect-time peer check (DNS rebinding defence)."""

from __future__ import annotations

import pickle
import socket

import pytest
import requests

from portal.security import urlguard
from portal.security.urlguard import (
    GuardedHTTPAdapter,
    PeerNotAllowed,
    UrlNotAllowed,
    address_allowed,
    builtin_name,
    check_connector_url,
    parse_networks,
)


@pytest.fixture
def resolver(monkeypatch):
    """Pretend DNS: {host: [addresses]}; unknown hosts fail like getaddrinfo does."""
    table: dict[str, list[str]] = {}

    def resolve(host, port):
        if host not in table:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return table[host]

    monkeypatch.setattr(urlguard, "resolve_host", resolve)
    return table


def guarded_session(allowed_networks=()) -> requests.Session:
    session = requests.Session()
    session.trust_env = False
    adapter = GuardedHTTPAdapter(allowed_networks, max_retries=0)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session


# --- URL shape ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("url", [
    "http://127.0.0.1:8100/erp",
    "https://127.0.0.1/erp/v1",
    "HTTP://127.0.0.1",
    "http://[::1]:8100/erp",
    "http://localhost:8100/erp",
    "builtin:demo",
    "builtin:tryton_2-x",
])
def test_acceptable_urls(url):
    check_connector_url(url)


@pytest.mark.parametrize("url, words", [
    ("ftp://127.0.0.1/erp", "http"),
    ("file:///etc/passwd", "http"),
    ("gopher://127.0.0.1:70/", "http"),
    ("javascript:alert(1)", "http"),
    ("127.0.0.1:8100/erp", "http"),
    ("http://user:pass@127.0.0.1/erp", "user name or password"),
    ("http://user@127.0.0.1/erp", "user name or password"),
    ("http:///erp", "no host"),
    ("http://127.0.0.1/erp#frag", "fragment"),
    ("http://127.0.0.1/erp?x=1", "query"),
    ("http://127.0.0.1:0/erp", "port"),
    ("http://127.0.0.1:99999/erp", "not a valid URL"),
    (" http://127.0.0.1/erp", "spaces"),
    ("http://127.0.0.1/e rp", "spaces"),
    ("http://127.0.0.1/erp\n", "control"),
    ("", "empty"),
    ("builtin:", "builtin:<name>"),
    ("builtin:Demo", "builtin:<name>"),
    ("builtin:../x", "builtin:<name>"),
])
def test_refused_url_shapes(url, words):
    with pytest.raises(UrlNotAllowed) as err:
        check_connector_url(url)
    assert words in str(err.value)
    assert err.value.error_code == "ADDRESS_NOT_ALLOWED" and err.value.transient is False
    assert err.value.user_message == str(err.value)


def test_builtin_name():
    assert builtin_name("builtin:demo") == "demo"
    assert builtin_name("http://x") is None and builtin_name("builtin:a b") is None


# --- addresses ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("ip, reason", [
    ("169.254.169.254", "metadata"),
    ("fd00:ec2::254", "metadata"),
    ("100.100.100.200", "metadata"),
    ("169.254.1.1", "link-local"),
    ("fe80::1", "link-local"),
    ("fe80::1%eth0", "link-local"),
    ("::ffff:169.254.169.254", "metadata"),
    ("0.0.0.0", "unspecified"),
    ("0.1.2.3", "unspecified"),
    ("::", "unspecified"),
    ("224.0.0.1", "multicast"),
    ("239.255.255.250", "multicast"),
    ("ff02::1", "multicast"),
    ("255.255.255.255", "broadcast"),
    ("not-an-ip", "not an IP"),
])
def test_always_refused_addresses(ip, reason):
    assert not address_allowed(ip)
    assert reason in urlguard.refusal_reason(ip)
    # an allowlist cannot open them up
    assert not address_allowed(ip, ["0.0.0.0/0", "::/0"])


@pytest.mark.parametrize("ip", ["127.0.0.1", "::1", "10.1.2.3", "192.168.0.10", "172.16.5.4", "8.8.8.8",
                                "[::1]", "::ffff:127.0.0.1"])
def test_loopback_private_and_public_are_allowed_by_default(ip):
    assert address_allowed(ip)


def test_allowlist_in_and_out():
    nets = ["10.0.0.0/8", "192.168.1.7", "fd12:3456::/32"]
    assert address_allowed("10.200.0.1", nets)
    assert address_allowed("192.168.1.7", nets)
    assert address_allowed("fd12:3456::1", nets)
    assert not address_allowed("192.168.1.8", nets)
    assert not address_allowed("127.0.0.1", nets)
    assert not address_allowed("::1", nets)
    assert "outside the allowed" in urlguard.refusal_reason("127.0.0.1", nets)


def test_invalid_allowlist_entry_is_a_readable_configuration_error():
    with pytest.raises(ValueError, match="not a valid network"):
        parse_networks(["10.0.0.0/8", "ten-dot-something"])
    assert parse_networks(["10.1.2.3/8"])[0].compressed == "10.0.0.0/8"  # host bits tolerated


def test_metadata_ip_literal_in_url_is_refused():
    for url in ("http://169.254.169.254/latest/meta-data", "http://[fd00:ec2::254]/", "http://100.100.100.200/x",
                "http://[fe80::1]:8100/erp", "http://0.0.0.0:8100/erp"):
        with pytest.raises(UrlNotAllowed):
            check_connector_url(url)


def test_host_is_refused_when_any_resolved_address_is_refused(resolver):
    resolver["erp.lan"] = ["10.0.0.5"]
    resolver["sneaky.lan"] = ["10.0.0.5", "169.254.169.254"]
    check_connector_url("http://erp.lan:8100/erp")
    with pytest.raises(UrlNotAllowed) as err:
        check_connector_url("http://sneaky.lan/erp")
    assert "169.254.169.254" in str(err.value) and "metadata" in str(err.value)


def test_allowlist_applies_to_every_resolved_address(resolver):
    resolver["erp.lan"] = ["10.0.0.5", "192.168.3.3"]
    check_connector_url("http://erp.lan/erp", ["10.0.0.0/8", "192.168.0.0/16"])
    with pytest.raises(UrlNotAllowed, match="outside the allowed"):
        check_connector_url("http://erp.lan/erp", ["10.0.0.0/8"])


def test_loopback_needs_to_be_in_a_non_empty_allowlist():
    check_connector_url("http://127.0.0.1:8100/erp")
    check_connector_url("http://127.0.0.1:8100/erp", ["127.0.0.1/32"])
    with pytest.raises(UrlNotAllowed):
        check_connector_url("http://127.0.0.1:8100/erp", ["10.0.0.0/8"])


def test_unresolvable_host(resolver):
    with pytest.raises(UrlNotAllowed, match="could not be resolved"):
        check_connector_url("https://erp.nowhere.invalid/erp")


def test_real_resolution_of_localhost():
    check_connector_url("http://localhost:8100/erp", ["127.0.0.0/8", "::1/128"])


# --- connect time ------------------------------------------------------------------------------------------


def test_adapter_allows_a_peer_inside_the_allowlist(fake):
    fake.reset()
    with guarded_session(["127.0.0.1/32"]) as session:
        resp = session.post(f"http://localhost:{fake.port}/erp/GetConfigData", json={}, timeout=5)
    assert resp.status_code == 200 and resp.json()["IsOk"] is True


def test_adapter_refuses_a_peer_outside_the_allowlist_before_sending(fake):
    fake.reset()
    with guarded_session(["10.0.0.0/8"]) as session, pytest.raises(PeerNotAllowed) as err:
        session.post(f"http://localhost:{fake.port}/erp/GetConfigData", json={}, timeout=5)
    assert "127.0.0.1" in str(err.value) and err.value.error_code == "ADDRESS_NOT_ALLOWED"
    assert fake.requests == []


def test_https_peer_is_checked_before_the_tls_handshake(fake):
    fake.reset()
    # not an SSLError: the check runs on the raw socket, before the handshake
    with guarded_session(["10.0.0.0/8"]) as session, pytest.raises(PeerNotAllowed):
        session.post(f"https://localhost:{fake.port}/erp/GetConfigData", json={}, timeout=5)


def test_dns_rebinding_is_caught_at_connect_time(fake, resolver):
    # at save time the name resolved to an allowed LAN address...
    resolver["localhost"] = ["10.9.9.9"]
    check_connector_url(f"http://localhost:{fake.port}/erp", ["10.0.0.0/8"])
    # ...at connect time it resolves to loopback, which the allowlist does not cover
    fake.reset()
    with guarded_session(["10.0.0.0/8"]) as session, pytest.raises(PeerNotAllowed):
        session.post(f"http://localhost:{fake.port}/erp/GetConfigData", json={}, timeout=5)
    assert fake.requests == []


def test_peer_check_uses_the_always_denied_list_without_allowlist():
    class FakeSock:
        closed = False

        def getpeername(self):
            return ("169.254.169.254", 80)

        def close(self):
            self.closed = True

    sock = FakeSock()

    class Base:
        host = "metadata.internal"

        def _new_conn(self):
            return sock

    class Probe(urlguard._PeerCheckMixin, Base):
        pass

    with pytest.raises(PeerNotAllowed, match="metadata"):
        Probe()._new_conn()
    assert sock.closed


def test_adapter_refuses_proxies(fake):
    with guarded_session() as session, pytest.raises(UrlNotAllowed, match="proxy"):
        session.post(f"http://127.0.0.1:{fake.port}/erp/GetConfigData", json={}, timeout=5,
                     proxies={"http": "http://127.0.0.1:3128"})


def test_adapter_survives_pickling():
    adapter = pickle.loads(pickle.dumps(GuardedHTTPAdapter(["10.0.0.0/8"])))
    assert [n.compressed for n in adapter.allowed_networks] == ["10.0.0.0/8"]
    pool = adapter.poolmanager.connection_from_url("http://127.0.0.1:1/")
    assert [n.compressed for n in pool.allowed_networks] == ["10.0.0.0/8"]
