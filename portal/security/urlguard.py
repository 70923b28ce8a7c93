"""Outbound URL checks for connector addresses (SSRF defence).

Two layers, both built on :func:`address_allowed`:

* **Save time** — :func:`check_connector_url` checks the scheme and shape of a connector URL and resolves its
  host; every resolved address must be allowed.
* **Connect time** — :class:`GuardedHTTPAdapter` (a ``requests`` adapter) checks the address the socket is
  actually connected to, after ``connect()`` and before any request byte is sent. This defeats DNS rebinding
  (a name that resolved to an allowed address at save time and to 169.254.169.254 later).

Policy: link-local (169.254.0.0/16, fe80::/10, including the cloud-metadata addresses), unspecified
(0.0.0.0/8, ::), broadcast, multicast and the metadata addresses of other clouds (fd00:ec2::254,
100.100.100.200, Azure's 168.63.129.16) are always refused — also when they hide inside an IPv6 address
(IPv4-mapped ``::ffff:a.b.c.d``, IPv4-compatible ``::a.b.c.d``, NAT64 ``64:ff9b::a.b.c.d`` and
``64:ff9b:1::/48``, 6to4 ``2002:AABB:CCDD::``, Teredo). Loopback and private addresses are allowed unless an
allowlist of networks is given, in which case every address must be inside one of them (ERP connectors sit on
LANs, and the tests use 127.0.0.1).

**Every outbound HTTP request of the portal goes through** :func:`guarded_session` (the connector client, the
built-in Tryton connector, the local Tryton helper): a ``requests.Session`` with the guarded adapter on
``http://`` and ``https://``, no environment proxies or ``.netrc``, and no redirects followed.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from collections.abc import Iterable, Mapping, Sequence
from typing import ClassVar
from urllib.parse import urlsplit

import requests
import requests.adapters
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

BUILTIN_RE = re.compile(r"^builtin:([a-z0-9_-]+)$")
ALLOWED_SCHEMES = ("http", "https")

_IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
_IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

# (network, reason) pairs refused whatever the allowlist says. Order matters only for the message:
# the more specific metadata entries come first.
_ALWAYS_DENIED: tuple[tuple[_IPNetwork, str], ...] = tuple(
    (ipaddress.ip_network(net), reason)
    for net, reason in (
        ("169.254.169.254/32", "a cloud metadata address"),
        ("fd00:ec2::254/128", "a cloud metadata address"),
        ("100.100.100.200/32", "a cloud metadata address"),
        ("168.63.129.16/32", "a cloud metadata address"),  # Azure's wireserver / host agent
        ("169.254.0.0/16", "a link-local address"),
        ("fe80::/10", "a link-local address"),
        ("0.0.0.0/8", "an unspecified address"),
        ("::/128", "an unspecified address"),
        ("255.255.255.255/32", "a broadcast address"),
        ("224.0.0.0/4", "a multicast address"),
        ("ff00::/8", "a multicast address"),
    )
)


class UrlNotAllowed(ValueError):
    """A connector URL or address the portal refuses to talk to.

    Carries the attributes of ``portal.connectors.client.ConnectorError`` (``user_message``,
    ``tech_message``, ``error_code``, ``transient``) so callers can treat both alike; it is permanent.
    """

    error_code = "ADDRESS_NOT_ALLOWED"
    transient = False
    method = ""

    def __init__(self, message: str, tech_message: str = ""):
        super().__init__(message)
        self.user_message = message
        self.tech_message = tech_message or message


class PeerNotAllowed(UrlNotAllowed):
    """Raised at connect time when the socket's peer address is not allowed (e.g. after DNS rebinding)."""


def parse_networks(networks: Iterable[str | _IPNetwork] | None) -> tuple[_IPNetwork, ...]:
    """``["10.0.0.0/8", "127.0.0.1"]`` → network objects. Host bits are tolerated (``10.1.2.3/8``).

    Raises ValueError with a readable message on an invalid entry (a configuration error).
    """
    parsed = []
    for net in networks or ():
        if isinstance(net, ipaddress.IPv4Network | ipaddress.IPv6Network):
            parsed.append(net)
            continue
        try:
            parsed.append(ipaddress.ip_network(str(net).strip(), strict=False))
        except ValueError as exc:
            raise ValueError(f"{net!r} is not a valid network in the connector allowlist.") from exc
    return tuple(parsed)


def _parse_ip(ip: str | _IPAddress) -> _IPAddress | None:
    if isinstance(ip, ipaddress.IPv4Address | ipaddress.IPv6Address):
        addr = ip
    else:
        text = str(ip).strip()
        if text.startswith("[") and text.endswith("]"):
            text = text[1:-1]
        text = text.split("%", 1)[0]  # drop an IPv6 zone id (fe80::1%eth0)
        try:
            addr = ipaddress.ip_address(text)
        except ValueError:
            return None
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped  # ::ffff:169.254.169.254 is 169.254.169.254
    return addr


_UNSPECIFIED_V4 = ipaddress.ip_network("0.0.0.0/8")
_NAT64_WELL_KNOWN = ipaddress.ip_network("64:ff9b::/96")  # RFC 6052
_NAT64_LOCAL = ipaddress.ip_network("64:ff9b:1::/48")  # RFC 8215: the IPv4 address sits in bits 48-87 (/48 form)
_IPV4_COMPATIBLE = ipaddress.ip_network("::/96")  # deprecated ::a.b.c.d (RFC 4291 §2.5.5.1)


def _nat64_layouts(value: int) -> list[int]:
    """The IPv4 address inside a NAT64 address for a /48, /56, /64 and /96 prefix (RFC 6052 §2.2: bits 64-71 are
    the "u" octet and never carry address bits)."""

    def bits(start: int, length: int) -> int:  # ``length`` bits from bit ``start`` (bit 0 = most significant)
        return (value >> (128 - start - length)) & ((1 << length) - 1)

    return [
        (bits(48, 16) << 16) | bits(72, 16),  # /48
        (bits(56, 8) << 24) | bits(72, 24),  # /56
        bits(72, 32),  # /64
        bits(96, 32),  # /96
    ]


def embedded_ipv4(addr: _IPAddress) -> list[ipaddress.IPv4Address]:
    """The IPv4 addresses an IPv6 address carries and may be translated to on the way: NAT64 (well-known and
    local-use prefixes), IPv4-compatible, 6to4 and Teredo (the server and the client). Empty for IPv4."""
    if not isinstance(addr, ipaddress.IPv6Address):
        return []
    found: list[ipaddress.IPv4Address] = []
    value = int(addr)
    if addr in _NAT64_WELL_KNOWN:
        found.append(ipaddress.IPv4Address(value & 0xFFFFFFFF))
    elif addr in _NAT64_LOCAL:
        # the operator picks the prefix length (RFC 6052 §2.2): every layout a /48 … /96 prefix allows
        for bits in _nat64_layouts(value):
            found.append(ipaddress.IPv4Address(bits))
    elif addr in _IPV4_COMPATIBLE and value > 1:  # not :: or ::1, which are themselves
        found.append(ipaddress.IPv4Address(value & 0xFFFFFFFF))
    if addr.sixtofour is not None:
        found.append(addr.sixtofour)
    if addr.teredo is not None:
        found.extend(addr.teredo)
    return found


def refusal_reason(ip: str | _IPAddress, allowed_networks: Iterable[str | _IPNetwork] = ()) -> str | None:
    """Why ``ip`` is refused (a phrase such as ``"a link-local address"``), or None when it is allowed."""
    addr = _parse_ip(ip)
    if addr is None:
        return "not an IP address"
    for net, reason in _ALWAYS_DENIED:
        if addr.version == net.version and addr in net:
            return reason
    for inner in embedded_ipv4(addr):
        for net, reason in _ALWAYS_DENIED:
            # 0.0.0.0/8 is skipped inside IPv6: a translator never reaches it, and the zero padding of the other
            # NAT64 layouts would read as 0.x.y.z
            if inner.version == net.version and inner in net and net != _UNSPECIFIED_V4:
                return f"{reason} ({inner}) inside an IPv6 address"
    nets = parse_networks(allowed_networks)
    if nets and not any(addr.version == net.version and addr in net for net in nets):
        return "outside the allowed connector networks"
    return None


def address_allowed(ip: str | _IPAddress, allowed_networks: Iterable[str | _IPNetwork] = ()) -> bool:
    """True when the portal may connect to ``ip``: never link-local/metadata/unspecified/multicast, and
    inside one of ``allowed_networks`` when that list is non-empty. Used at save time and at connect time."""
    return refusal_reason(ip, allowed_networks) is None


def resolve_host(host: str, port: int) -> list[str]:
    """Every address ``host`` resolves to (module-level so tests can substitute a resolver)."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(info[4][0] for info in infos))


def builtin_name(url: str) -> str | None:
    """``"builtin:demo"`` → ``"demo"``; None for any other URL."""
    match = BUILTIN_RE.match(url or "")
    return match.group(1) if match else None


def check_url_syntax(url: str) -> None:
    """The checks of :func:`check_connector_url` that need no DNS: scheme, userinfo, host, port, fragment."""
    if not isinstance(url, str) or not url.strip():
        raise UrlNotAllowed("The connector address is empty.")
    if url != url.strip() or any(ord(ch) < 33 or ord(ch) == 127 for ch in url):
        raise UrlNotAllowed("The connector address must not contain spaces or control characters.")
    if url.lower().startswith("builtin:"):
        if builtin_name(url) is None:
            raise UrlNotAllowed("A built-in connector address looks like builtin:<name> "
                                "(lower-case letters, digits, '-' and '_').")
        return
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise UrlNotAllowed(f"The connector address is not a valid URL ({exc}).") from exc
    if parts.scheme.lower() not in ALLOWED_SCHEMES:
        raise UrlNotAllowed("The connector address must start with http:// or https:// (or be builtin:<name>).")
    if "@" in parts.netloc:
        raise UrlNotAllowed("The connector address must not contain a user name or password; "
                            "use the connector's token instead.")
    if not parts.hostname:
        raise UrlNotAllowed("The connector address has no host name.")
    if port == 0:
        raise UrlNotAllowed("The connector address has an invalid port.")
    if parts.fragment or url.endswith("#"):
        raise UrlNotAllowed("The connector address must not contain a '#' fragment.")
    if parts.query or url.endswith("?"):
        raise UrlNotAllowed("The connector address must not contain a '?' query; give the base URL only.")


def check_connector_url(url: str, allowed_networks: Sequence[str] = ()) -> None:
    """Raise :class:`UrlNotAllowed` unless ``url`` is an acceptable connector address.

    Accepts ``http``/``https`` URLs (with a path) and ``builtin:<name>``. The host is resolved and every
    address it resolves to must pass :func:`address_allowed`.
    """
    check_url_syntax(url)
    if builtin_name(url) is not None:
        return
    nets = parse_networks(allowed_networks)
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = parts.port or (443 if parts.scheme.lower() == "https" else 80)
    try:
        addresses = resolve_host(host, port)
    except (OSError, UnicodeError) as exc:
        raise UrlNotAllowed(f"The connector host {host!r} could not be resolved.",
                            f"getaddrinfo({host!r}) failed: {exc}") from exc
    if not addresses:
        raise UrlNotAllowed(f"The connector host {host!r} could not be resolved.")
    for address in addresses:
        reason = refusal_reason(address, nets)
        if reason is not None:
            raise UrlNotAllowed(f"The connector host {host!r} resolves to {address}, which is {reason}; "
                                "the portal does not connect there.")


# --- connect-time check -------------------------------------------------------------------------------


class _PeerCheckMixin:
    """Checks ``sock.getpeername()`` right after the TCP connection is made, before TLS or any request; a host
    that is an IP address literal is checked before connecting at all (``0.0.0.0`` would otherwise reach this
    host and show up as the loopback peer)."""

    allowed_networks: tuple[_IPNetwork, ...] = ()

    def _new_conn(self):  # urllib3 creates the raw socket here, for http and https alike
        host = getattr(self, "host", "?")
        if _parse_ip(host) is not None:
            reason = refusal_reason(host, self.allowed_networks)
            if reason is not None:
                raise PeerNotAllowed(
                    f"The connector host {host!r} is {reason}; the portal does not connect there.",
                    f"connect-time check refused address {host!r} before connecting ({reason})",
                )
        sock = super()._new_conn()
        try:
            peer = sock.getpeername()[0]
        except OSError as exc:
            sock.close()
            raise PeerNotAllowed("The connector's address could not be checked.",
                                 f"getpeername failed: {exc}") from exc
        reason = refusal_reason(peer, self.allowed_networks)
        if reason is not None:
            sock.close()
            host = getattr(self, "host", "?")
            raise PeerNotAllowed(
                f"The connector host {host!r} is at {peer}, which is {reason}; the portal does not connect there.",
                f"connect-time check refused peer {peer} for host {host!r} ({reason})",
            )
        return sock


class GuardedHTTPConnection(_PeerCheckMixin, HTTPConnection):
    pass


class GuardedHTTPSConnection(_PeerCheckMixin, HTTPSConnection):
    pass


class _GuardedPoolMixin:
    allowed_networks: tuple[_IPNetwork, ...] = ()

    def _new_conn(self):
        conn = super()._new_conn()
        conn.allowed_networks = self.allowed_networks
        return conn


class GuardedHTTPConnectionPool(_GuardedPoolMixin, HTTPConnectionPool):
    ConnectionCls = GuardedHTTPConnection


class GuardedHTTPSConnectionPool(_GuardedPoolMixin, HTTPSConnectionPool):
    ConnectionCls = GuardedHTTPSConnection


class GuardedHTTPAdapter(requests.adapters.HTTPAdapter):
    """A ``requests`` adapter whose connections refuse peers that :func:`address_allowed` rejects.

    Mount it for ``http://`` and ``https://``. A refused connection raises :class:`PeerNotAllowed`
    (not a ``requests`` exception: it passes through ``requests`` unchanged). Proxies are refused, since
    the peer would then be the proxy rather than the connector.
    """

    __attrs__: ClassVar[list[str]] = [*requests.adapters.HTTPAdapter.__attrs__, "allowed_networks"]  # kept when pickled

    def __init__(self, allowed_networks: Sequence[str] = (), **kwargs):
        self.allowed_networks = parse_networks(allowed_networks)
        super().__init__(**kwargs)

    def init_poolmanager(self, connections, maxsize, block=requests.adapters.DEFAULT_POOLBLOCK, **pool_kwargs):
        super().init_poolmanager(connections, maxsize, block=block, **pool_kwargs)
        nets = self.allowed_networks
        self.poolmanager.pool_classes_by_scheme = {
            "http": type("GuardedHTTPPool", (GuardedHTTPConnectionPool,), {"allowed_networks": nets}),
            "https": type("GuardedHTTPSPool", (GuardedHTTPSConnectionPool,), {"allowed_networks": nets}),
        }

    def proxy_manager_for(self, proxy, **proxy_kwargs):
        raise UrlNotAllowed("Connectors are not reached through a proxy.", f"refused proxy {proxy!r}")


# --- the one outbound transport -----------------------------------------------------------------------------


class GuardedSession(requests.Session):
    """A ``requests.Session`` that never follows a redirect, whatever the caller passes (a 3xx answer is returned
    as it is), and never reads proxies or credentials from the environment. Build it with :func:`guarded_session`."""

    def __init__(self):
        super().__init__()
        self.trust_env = False
        self.max_redirects = 0

    def request(self, method, url, *args, **kwargs):
        kwargs["allow_redirects"] = False
        return super().request(method, url, *args, **kwargs)

    def resolve_redirects(self, *args, **kwargs):  # belt and braces: requests' redirect loop is never entered
        return iter(())


def guarded_session(allowed_networks: Sequence[str] | Mapping | None = (), *,
                    adapter_class: type[GuardedHTTPAdapter] = GuardedHTTPAdapter,
                    **adapter_kwargs) -> GuardedSession:
    """The portal's only way to make an outbound HTTP request: a :class:`GuardedSession` whose ``http://`` and
    ``https://`` adapters check the connected peer (:class:`GuardedHTTPAdapter` or a subclass given as
    ``adapter_class``); every other scheme has no adapter and fails.

    ``allowed_networks`` is the allowlist (``PORTAL_CONNECTOR_ALLOWED_NETWORKS``) or the Flask config mapping it is
    read from (``CONNECTOR_ALLOWED_NETWORKS``). Adapters get ``max_retries=0`` unless told otherwise: retries are
    the caller's decision."""
    if isinstance(allowed_networks, Mapping):
        allowed_networks = allowed_networks.get("CONNECTOR_ALLOWED_NETWORKS") or ()
    adapter_kwargs.setdefault("max_retries", 0)
    session = GuardedSession()
    session.adapters.clear()
    adapter = adapter_class(tuple(allowed_networks or ()), **adapter_kwargs)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session
