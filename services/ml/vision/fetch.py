"""SSRF-safe download of a photo URL.

Only hosts on VISION_URL_ALLOWED_HOSTS (exact names or ``*.suffix``) are
fetched, over HTTPS. The host is resolved here and every address checked
(loopback, private, link-local, multicast, reserved, shared, unspecified and
cloud metadata addresses are refused, also inside an IPv6 address that leads to
them: NAT64, 6to4, IPv4-mapped or -compatible); the connection then goes to a checked
address, with the host name kept for TLS and ``Host``, so DNS cannot answer
differently between the check and the connection. Redirects are followed by
hand, at most ``MAX_REDIRECTS``, each target checked the same way. The body
is streamed and cut at VISION_MAX_IMAGE_BYTES; the content type must be an
image; the whole download is bounded by VISION_FETCH_TIMEOUT_SECONDS.

The body is asked for and read as it is sent (``Accept-Encoding: identity``,
raw bytes): a ``Content-Encoding`` response is refused, never decompressed. A
decoder inflates each network chunk whole before any size check can see it:
a 10 MiB gzip bomb is 10 GiB in memory, and a chain (``gzip, gzip``)
multiplies. Photos are compressed already; HTTP compression gains nothing.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Awaitable, Callable, Collection
from urllib.parse import SplitResult, urljoin, urlsplit

import httpx

from services.ml.vision.images import ImageRejected

MAX_REDIRECTS = 3
Resolver = Callable[[str, int], Awaitable[list[str]]]
AddressCheck = Callable[[ipaddress.IPv4Address | ipaddress.IPv6Address], bool]

_METADATA = {
    ipaddress.ip_address("169.254.169.254"),
    ipaddress.ip_address("fd00:ec2::254"),
    ipaddress.ip_address("100.100.100.200"),
}


# IPv6 ranges that carry an IPv4 address in their last 32 bits and reach it:
# NAT64's well-known prefix (RFC 6052: DNS64 answers 64:ff9b::a.b.c.d for an
# IPv4-only host, as in IPv6-only EKS clusters), the deprecated IPv4-compatible
# form, and SIIT's IPv4-translated form. Python counts them all as global.
_EMBEDS_IPV4 = (
    ipaddress.ip_network("64:ff9b::/96"),
    ipaddress.ip_network("::/96"),
    ipaddress.ip_network("::ffff:0:0:0/96"),
)
# Never a photo host's: local-use NAT64 (RFC 8215, the IPv4 address spread
# over the prefix) and the deprecated site-local range, both still routed
# inside some networks.
_NEVER_PUBLIC = (ipaddress.ip_network("64:ff9b:1::/48"), ipaddress.ip_network("fec0::/10"))


def _embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address a connection to ``address`` may end up at, if any."""
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if any(address in network for network in _EMBEDS_IPV4):
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def public_address(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    """Whether ``address`` is a global unicast address outside any metadata service.

    An IPv6 address that embeds an IPv4 one (mapped, NAT64, 6to4, ...) must
    pass as that IPv4 address too: ``64:ff9b::a9fe:a9fe`` is the metadata
    service through a NAT64 gateway, ``64:ff9b::a00:1`` a VPC address.
    """
    if isinstance(address, ipaddress.IPv6Address):
        if any(address in network for network in _NEVER_PUBLIC):
            return False
        embedded = _embedded_ipv4(address)
        if embedded is not None:
            if not public_address(embedded):
                return False
            if address.ipv4_mapped is not None:
                return True
    return address.is_global and not address.is_multicast and address not in _METADATA


async def system_resolver(host: str, port: int) -> list[str]:
    """Every address the system resolver gives for ``host``."""
    loop = asyncio.get_running_loop()
    infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return sorted({str(info[4][0]) for info in infos})


def host_allowed(host: str, allowed: Collection[str]) -> bool:
    """Exact match, or ``*.example.com`` matching any subdomain of example.com."""
    host = host.lower().rstrip(".")
    for pattern in allowed:
        pattern = pattern.lower().rstrip(".")
        if pattern.startswith("*.") and host.endswith(pattern[1:]):
            return True
        if host == pattern:
            return True
    return False


def _split(url: str) -> SplitResult:
    """``url`` in parts; ``ImageRejected`` when it has none (an IPv6 bracket left open, ...)."""
    try:
        return urlsplit(url)
    except ValueError:
        raise ImageRejected("url_invalid", "the photo URL cannot be parsed") from None


def _ascii_host(name: str) -> str:
    """A host name (or ``host:port``) in the ASCII form DNS, TLS and ``Host`` carry (IDNA).

    Done once here: left to getaddrinfo and httpx, a label of 64+ characters or
    an empty one raised UnicodeError from the resolver, and a host outside
    ASCII from the ``Host`` header, neither an answer about the URL.
    """
    try:
        return name.encode("idna").decode("ascii")
    except UnicodeError:
        raise ImageRejected("url_invalid", "the photo URL's host is not a valid DNS name") from None


class PhotoFetcher:
    """Downloads photos under the rules of the module docstring."""

    def __init__(
        self,
        *,
        allowed_hosts: Collection[str],
        max_bytes: int,
        timeout_seconds: float,
        resolver: Resolver = system_resolver,
        address_allowed: AddressCheck = public_address,
        schemes: Collection[str] = ("https",),
        verify: bool = True,
    ) -> None:
        self._allowed = tuple(allowed_hosts)
        self._max_bytes = max_bytes
        self._timeout = timeout_seconds
        self._resolve = resolver
        self._address_allowed = address_allowed
        self._schemes = frozenset(schemes)
        self._client = httpx.AsyncClient(
            follow_redirects=False, verify=verify, timeout=timeout_seconds, trust_env=False
        )

    async def close(self) -> None:
        """Close the connection pool."""
        await self._client.aclose()

    async def _checked_address(self, host: str, port: int) -> str:
        if not host_allowed(host, self._allowed):
            raise ImageRejected("url_host_not_allowed", f"photos are not fetched from {host!r}")
        try:
            addresses = await self._resolve(host, port)
        except OSError:
            raise ImageRejected("url_unresolvable", f"{host!r} does not resolve") from None
        if not addresses:
            raise ImageRejected("url_unresolvable", f"{host!r} does not resolve")
        for address in addresses:
            if not self._address_allowed(ipaddress.ip_address(address)):
                raise ImageRejected(
                    "url_forbidden_address",
                    f"{host!r} resolves to an address photos are never fetched from",
                )
        return addresses[0]

    async def fetch(self, url: str) -> bytes:
        """The photo's bytes; ``ImageRejected`` for any rule broken."""
        try:
            async with asyncio.timeout(self._timeout):
                return await self._follow(url)
        except httpx.HTTPError as exc:
            raise ImageRejected(
                "url_fetch_failed", f"the photo could not be downloaded ({type(exc).__name__})"
            ) from None
        except TimeoutError:
            raise ImageRejected(
                "url_timeout", f"the photo did not download within {self._timeout:g} s"
            ) from None

    async def _follow(self, url: str) -> bytes:
        for _ in range(MAX_REDIRECTS + 1):
            parts = _split(url)
            if parts.scheme not in self._schemes or not parts.hostname:
                raise ImageRejected("url_invalid", "the photo URL must be an https:// URL")
            if parts.username or parts.password:
                raise ImageRejected("url_invalid", "credentials in photo URLs are refused")
            try:
                port = parts.port or (443 if parts.scheme == "https" else 80)
            except ValueError:
                raise ImageRejected("url_invalid", "the photo URL has an invalid port") from None
            host = _ascii_host(parts.hostname)
            address = await self._checked_address(host, port)
            ip_host = f"[{address}]" if ":" in address else address
            target = parts._replace(netloc=f"{ip_host}:{port}").geturl()
            request = self._client.build_request(
                "GET",
                target,
                headers={
                    "Host": _ascii_host(parts.netloc),
                    "Accept": "image/*",
                    "Accept-Encoding": "identity",
                },
                extensions={"sni_hostname": host},
            )
            response = await self._client.send(request, stream=True)
            try:
                if response.is_redirect:
                    location = response.headers.get("location")
                    if not location:
                        raise ImageRejected("url_bad_redirect", "a redirect without a Location")
                    url = urljoin(url, location)
                    continue
                if response.status_code != 200:
                    raise ImageRejected(
                        "url_fetch_failed", f"the photo URL answered {response.status_code}"
                    )
                content_type = response.headers.get("content-type", "").split(";")[0].strip()
                if not content_type.startswith("image/"):
                    raise ImageRejected(
                        "unsupported_image_type", f"the URL serves {content_type or 'no type'}"
                    )
                encoding = response.headers.get("content-encoding", "").strip().lower()
                if encoding not in ("", "identity"):
                    raise ImageRejected(
                        "url_content_encoded",
                        "the URL serves the photo with Content-Encoding "
                        f"{encoding[:40]!r}; photos are fetched uncompressed",
                    )
                declared = response.headers.get("content-length")
                if declared is not None and declared.isdigit() and int(declared) > self._max_bytes:
                    raise ImageRejected(
                        "image_too_big", f"the photo exceeds {self._max_bytes} bytes"
                    )
                chunks: list[bytes] = []
                size = 0
                async for chunk in response.aiter_raw():
                    size += len(chunk)
                    if size > self._max_bytes:
                        raise ImageRejected(
                            "image_too_big", f"the photo exceeds {self._max_bytes} bytes"
                        )
                    chunks.append(chunk)
                return b"".join(chunks)
            finally:
                await response.aclose()
        raise ImageRejected("url_too_many_redirects", f"more than {MAX_REDIRECTS} redirects")
