"""Host names and web origins as the browser guard compares them: pure functions, no aiohttp.

A host is what a Host header names without its port (`127.0.0.1`, `[::1]`, `bertd.internal.example`);
an origin is what an Origin header names, `scheme://host[:port]`. ALLOWED_HOSTS patterns follow
Django's ALLOWED_HOSTS: `*` matches any host, `.example.com` matches example.com and every
subdomain of it, anything else matches that one name; case and a trailing dot do not count."""

from __future__ import annotations

import ipaddress
import re
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit

DEFAULT_PORTS = {"http": 80, "https": 443, "ws": 80, "wss": 443}
# Letters, digits, '-', '.', and '_' (Docker Compose names containers project_service_1).
HOST_NAME = re.compile(r"^[a-z0-9_]([a-z0-9_.-]*[a-z0-9_])?$")


def _ip_literal(host: str) -> str | None:
    """The host as an IP address string (IPv6 without brackets), or None if it is a name."""
    bare = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    try:
        return str(ipaddress.ip_address(bare))
    except ValueError:
        return None


def normalize_host(host: str) -> str | None:
    """Lowercase, no trailing dot; IPv6 in brackets. None if it is neither an IP nor a host name."""
    host = host.strip().lower()
    ip = _ip_literal(host)
    if ip is not None:
        return f"[{ip}]" if ":" in ip else ip
    host = host[:-1] if host.endswith(".") else host
    return host if HOST_NAME.match(host) and ".." not in host else None


def split_host_header(value: str) -> tuple[str, int | None] | None:
    """('host', port or None) of a Host header, the host normalised; None when it is malformed."""
    value = value.strip()
    if value.startswith("["):
        end = value.find("]")
        host_part, rest = value[:end + 1], value[end + 1:]
        if end < 0 or (rest and not rest.startswith(":")):
            return None
        port_part = rest[1:] if rest else None
    else:
        host_part, colon, port_part = value.partition(":")
        if ":" in port_part or (colon and not port_part):
            return None  # an IPv6 address without brackets, or "host:"
        port_part = port_part or None
    host = normalize_host(host_part)
    if host is None or (host.startswith("[") and not host_part.startswith("[")):
        return None
    if port_part is None:
        return host, None
    if not port_part.isascii() or not port_part.isdigit() or not 0 < int(port_part) < 65536:
        return None
    return host, int(port_part)


def is_ip_literal(host: str) -> bool:
    return _ip_literal(host) is not None


def is_localhost(host: str) -> bool:
    # RFC 6761: browsers resolve localhost and every *.localhost to loopback themselves, so no DNS
    # answer (and no rebinding page) can ever stand behind these names.
    return host == "localhost" or host.endswith(".localhost")


def host_matches(host: str, patterns: tuple[str, ...]) -> bool:
    """Django's validate_host: `*`, `.domain` (the domain and its subdomains) or an exact name."""
    for pattern in patterns:
        if pattern == "*" or pattern == host:
            return True
        if pattern.startswith(".") and (host.endswith(pattern) or host == pattern[1:]):
            return True
    return False


def normalize_host_pattern(raw: str) -> str:
    """One ALLOWED_HOSTS entry, normalised; ValueError saying what is wrong with it."""
    entry = raw.strip().lower()
    if entry == "*":
        return entry
    if "://" in entry or "/" in entry:
        raise ValueError(f"{raw!r} is a URL; list host names only, like 'bertd.example.com'")
    subdomains = entry.startswith(".")
    name = entry[1:] if subdomains else entry
    host = normalize_host(name)
    if host is None and split_host_header(name) is not None:
        raise ValueError(f"{raw!r} has a port; list the host name without it")
    if host is None or (subdomains and is_ip_literal(host)):
        raise ValueError(f"{raw!r} is not a host name or IP address ('.example.com' allows a domain "
                         "and its subdomains, '*' any host)")
    return f".{host}" if subdomains else host


def normalize_origin(raw: str) -> str | None:
    """`scheme://host[:port]` in lowercase with the scheme's default port left out, as browsers
    send it; None for anything else (the opaque origin "null", a path, a non-web scheme)."""
    try:
        parts = urlsplit(raw.strip())
        port = parts.port
    except ValueError:
        return None
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname or parts.username or parts.password:
        return None
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        return None
    host = normalize_host(parts.hostname if ":" not in parts.hostname else f"[{parts.hostname}]")
    if host is None:
        return None
    scheme = parts.scheme.lower()
    return f"{scheme}://{host}" if port in (None, DEFAULT_PORTS[scheme]) else f"{scheme}://{host}:{port}"


def origin_is_host(origin: str, host_header: str) -> bool:
    """Whether a normalised origin names the same host and port as the request's Host header.

    The scheme is not compared: behind a proxy that terminates TLS, the dashboard's own origin is
    https:// while bertd receives plain http, and one host and port cannot serve both anyway."""
    host = split_host_header(host_header)
    if host is None:
        return False
    scheme, _, netloc = origin.partition("://")
    origin_host = split_host_header(netloc)
    if origin_host is None:
        return False
    default = DEFAULT_PORTS[scheme]
    return origin_host[0] == host[0] and (origin_host[1] or default) == (host[1] or default)


@dataclass(frozen=True)
class BrowserPolicy:
    allowed_hosts: tuple[str, ...]  # ALLOWED_HOSTS patterns
    machine_names: frozenset[str]  # socket.gethostname() and getfqdn(), normalised
    allowed_origins: frozenset[str]  # ALLOWED_ORIGINS, normalised

    def host_allowed(self, host: str) -> bool:
        return (is_ip_literal(host) or is_localhost(host) or host in self.machine_names
                or host_matches(host, self.allowed_hosts))


def machine_names() -> frozenset[str]:
    """The names this machine calls itself (getfqdn may ask DNS: called once, off the event loop)."""
    names = {normalize_host(socket.gethostname()), normalize_host(socket.getfqdn())}
    return frozenset(name for name in names if name)
