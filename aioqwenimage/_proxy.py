"""
Which proxy each request takes: the client's ``proxy=``, else the environment, as httpx reads it.

``HTTP_PROXY``, ``HTTPS_PROXY`` and ``ALL_PROXY`` (either case) pick a proxy by the target's
scheme; ``NO_PROXY`` lists hosts that go direct. httpx's reading is the one users of async Python
clients already know, so it is followed exactly, down to its corners: ``*`` turns proxying off;
``example.com`` covers the domain and its subdomains, ``.example.com`` only the subdomains; an IP
address or ``localhost`` only itself; an entry with a scheme (``http://host``) only that scheme.
Loopback targets are not exempt (httpx does not exempt them either): with ``HTTP_PROXY`` set, an
emulator on ``http://127.0.0.1`` is reached through the proxy unless ``NO_PROXY`` names it.

aiohttp's own ``trust_env`` is not used: it also reads ``~/.netrc`` and would add its
credentials to requests, and it reads the environment again on every request. Here the
environment is read once, when the client is made, as httpx does.
"""

from __future__ import annotations

import ipaddress
import logging
import re
import urllib.request
from collections.abc import Mapping
from urllib.parse import urlsplit

import attrs

__all__ = ["ProxyRoutes"]

logger = logging.getLogger("aioqwenimage")

_SCHEMES = ("http", "https")


@attrs.frozen
class _Bypass:
    """One ``NO_PROXY`` entry: a host pattern, optionally bound to a scheme and a port."""

    host: re.Pattern[str]
    scheme: str | None = None
    port: int | None = None

    def matches(self, scheme: str, host: str, port: int | None) -> bool:
        return (
            (self.scheme is None or self.scheme == scheme)
            and (self.port is None or self.port == port)
            and self.host.fullmatch(host) is not None
        )

    @classmethod
    def parse(cls, entry: str) -> _Bypass:
        """
        One entry of ``NO_PROXY``.

        Raises:
            ValueError: The entry has a port that is not a number.
        """
        scheme = None
        if _is_ip(entry):  # a bare IPv6 address would read as host:port below
            return cls(re.compile(re.escape(entry.lower())))
        if "://" in entry:
            parts = urlsplit(entry)
            scheme = None if parts.scheme == "all" else parts.scheme.lower()
            host, port = parts.hostname or "", parts.port
        else:
            parts = urlsplit(f"//{entry}")
            host, port = parts.hostname or entry.lower(), parts.port
        if _is_ip(host) or host == "localhost":
            return cls(re.compile(re.escape(host)), scheme, port)
        if host.startswith("."):
            # ".example.com": subdomains only.
            return cls(re.compile(r".+\." + re.escape(host[1:])), scheme, port)
        # "example.com": the domain and its subdomains, never "badexample.com".
        return cls(re.compile(r"(.+\.)?" + re.escape(host)), scheme, port)


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _check_proxy_url(value: str, *, source: str) -> str:
    url = value if "://" in value else f"http://{value}"
    parts = urlsplit(url)
    if parts.scheme not in _SCHEMES or not parts.hostname:
        # Never echo the value itself: a proxy URL may carry a password.
        msg = (
            f"{source} must be an http:// or https:// proxy URL such as "
            f"'http://proxy.example:3128' (socks proxies are not supported), not a "
            f"{parts.scheme or 'scheme-less'} URL"
        )
        raise ValueError(msg)
    return url


@attrs.frozen(repr=False)
class ProxyRoutes:
    """
    The proxy for each request of one client; built once, when the client is made.

    Attributes:
        explicit: The client's ``proxy=``: every request goes through it, ``NO_PROXY`` or not.
        by_scheme: From the environment: the proxy for ``"http"``, ``"https"`` or ``"all"``.
        bypass: ``NO_PROXY`` entries.
    """

    explicit: str | None = None
    by_scheme: Mapping[str, str] = attrs.field(factory=dict)
    bypass: tuple[_Bypass, ...] = ()

    @classmethod
    def resolve(cls, proxy: str | None, *, trust_env: bool) -> ProxyRoutes:
        """
        The routes from the client's options and, when `trust_env`, the environment.

        Raises:
            ValueError: `proxy`, or a proxy variable of the environment, is not an http(s) URL.
        """
        if proxy is not None:
            return cls(explicit=_check_proxy_url(proxy, source="proxy"))
        if not trust_env:
            return cls()
        # {"http": ..., "no": ...}; lowercase names win, and HTTP_PROXY is ignored under CGI
        # (httpoxy), as in every client built on urllib's reading.
        found = urllib.request.getproxies_environment()
        by_scheme = {
            scheme: _check_proxy_url(found[scheme], source=f"${scheme.upper()}_PROXY")
            for scheme in (*_SCHEMES, "all")
            if found.get(scheme)
        }
        entries = [e.strip() for e in found.get("no", "").split(",") if e.strip()]
        if "*" in entries:
            return cls()
        bypass = []
        for entry in entries:
            try:
                bypass.append(_Bypass.parse(entry))
            except ValueError:  # noqa: PERF203 - each entry stands alone
                # NO_PROXY is shared by every tool of the machine; one odd entry must not make
                # every client fail, but it must not pass unnoticed either.
                logger.warning("ignoring $NO_PROXY entry %r: not a host, host:port or URL", entry)
        return cls(by_scheme=by_scheme, bypass=tuple(bypass))

    def for_url(self, url: str) -> str | None:
        """The proxy URL for a request to `url`, or ``None`` to connect directly."""
        if self.explicit is not None:
            return self.explicit
        if not self.by_scheme:
            return None
        parts = urlsplit(url)
        scheme, host = parts.scheme.lower(), (parts.hostname or "").lower()
        if any(entry.matches(scheme, host, parts.port) for entry in self.bypass):
            return None
        return self.by_scheme.get(scheme) or self.by_scheme.get("all")

    def __repr__(self) -> str:
        # Proxy URLs may carry credentials: say only whether there are proxies.
        source = "explicit" if self.explicit else "environment" if self.by_scheme else "none"
        return f"<ProxyRoutes {source}>"
