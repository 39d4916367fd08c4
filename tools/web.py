"""Fetching a web page for an agent: http(s) only, allowed hosts and ports only, public
addresses only, one deadline and a size bound for the whole fetch.

An allow-list entry names a host and where on it an agent may go:

- ``example.org``: that host on ports 80 and 443; ``example.org:8080``: on port 8080 only;
- ``*.example.org`` (or ``*.example.org:8443``): the subdomains of a name;
- ``[2001:db8::1]:8080``: an IPv6 literal, in brackets;
- any of these ending in ``#private`` (``wiki.corp:8080#private``): the host may resolve to a
  loopback, private, link-local or otherwise non-public address. Without the marker such an
  address is refused. Hosts are capabilities an admin grants (``domain.capabilities``), so
  only an admin can write an entry, and an entry with the marker says they meant it.

The name is resolved once and every address checked (IPv4, IPv6, and IPv4 inside IPv6:
mapped, 6to4, Teredo, NAT64); the connection goes to a checked address, with the name sent as
``Host`` and TLS server name, so no second lookup can answer differently. Redirects are
followed up to ``MAX_REDIRECTS`` times, each hop checked like the first. The fetch, redirects
included, stops at one total deadline; headers are bounded by ``MAX_HEADER_BYTES`` and the
body by ``max_bytes``. Proxies from the environment are not used. The I/O is asyncio's own
streams, so the deadline truly stops it; no HTTP client is a dependency of ``tools``.
"""

from __future__ import annotations

import asyncio
import http.client
import io
import ipaddress
import re
import socket
import ssl
from dataclasses import dataclass
from html.parser import HTMLParser
from urllib.parse import quote, urljoin, urlsplit

from domain.errors import Forbidden, Invalid, NotFound, Unavailable

MAX_BYTES = 1_000_000
MAX_HEADER_BYTES = 64 * 1024
MAX_REDIRECTS = 5
PRIVATE_MARKER = "#private"
USER_AGENT = "Salon-agent/0.1"
DEFAULT_PORTS = {"http": 80, "https": 443}
REDIRECTS = frozenset({301, 302, 303, 307, 308})
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_UNSAFE_IN_TARGET = re.compile(r"[\x00-\x20\x7f-\U0010ffff]")

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


@dataclass(frozen=True)
class AllowEntry:
    """One allow-list entry: a host (or ``*.suffix``), a port (None: 80 and 443), the marker."""

    host: str
    port: int | None
    private: bool

    @classmethod
    def parse(cls, text: str) -> AllowEntry | None:
        """The entry written as ``text``, or None if it is not one."""
        text = text.strip().lower()
        private = text.endswith(PRIVATE_MARKER)
        if private:
            text = text[:-len(PRIVATE_MARKER)]
        port: str | None = None
        if text.startswith("["):
            host, _, rest = text[1:].partition("]")
            if rest.startswith(":"):
                port = rest[1:]
            elif rest:
                return None
        elif text.count(":") == 1:
            host, port = text.split(":")
        else:
            host = text
        if not host or (port is not None and not (port.isdigit() and 0 < int(port) < 65536)):
            return None
        return cls(host, None if port is None else int(port), private)

    def names(self, host: str) -> bool:
        """Whether the entry is about ``host``, whatever the port."""
        if self.host.startswith("*."):
            return host.endswith(self.host[1:])
        return host == self.host

    def allows(self, host: str, port: int) -> bool:
        """Whether the entry lets an agent reach ``host`` on ``port``."""
        return self.names(host) and (port in (80, 443) if self.port is None
                                     else port == self.port)


def _target(url: str) -> tuple[str, str, int]:
    parts = urlsplit(url)
    if parts.scheme not in DEFAULT_PORTS:
        raise Invalid(f"{url!r} is not an http(s) URL; only http:// and https:// can be fetched")
    host = (parts.hostname or "").lower()
    if not host:
        raise Invalid(f"{url!r} has no host; write a full address such as https://example.org/")
    try:
        port = parts.port
    except ValueError:
        raise Invalid(f"{url!r} has an invalid port; use a number from 1 to 65535") from None
    return parts.scheme, host, port or DEFAULT_PORTS[parts.scheme]


def _entries(allowed_hosts: frozenset[str]) -> list[AllowEntry]:
    return [e for e in map(AllowEntry.parse, allowed_hosts) if e is not None]


def host_allowed(url: str, allowed_hosts: frozenset[str]) -> bool:
    """Whether ``url``'s host and port are on the allow list."""
    try:
        _, host, port = _target(url)
    except Invalid:
        return False
    return any(entry.allows(host, port) for entry in _entries(allowed_hosts))


def check_url(url: str, allowed_hosts: frozenset[str]) -> AllowEntry:
    """The allow-list entry ``url`` falls under; ``Invalid`` for a non-http(s) URL and
    ``Forbidden`` for a host or port not allowed."""
    _, host, port = _target(url)
    entries = _entries(allowed_hosts)
    entry = next((e for e in entries if e.allows(host, port)), None)
    if entry is not None:
        return entry
    if any(e.names(host) for e in entries):
        ports = sorted({"80, 443" if e.port is None else str(e.port)
                        for e in entries if e.names(host)})
        raise Forbidden(f"port {port} of host {host!r} is not allowed for this agent (allowed: "
                        f"{'; '.join(ports)}); fetch an allowed port, or ask an admin to allow "
                        f"'{host}:{port}'")
    hosts = ", ".join(sorted(allowed_hosts)) or "none"
    raise Forbidden(f"host {host!r} is not on this agent's list of allowed hosts ({hosts}); "
                    "ask an admin to allow it, or fetch an allowed host")


def address_refusal(address: IPAddress) -> str | None:
    """Why agents may not connect to ``address`` ('loopback', 'private', ...), or None."""
    candidates: list[IPAddress] = [address]
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            candidates.append(address.ipv4_mapped)
        if address.sixtofour is not None:
            candidates.append(address.sixtofour)
        if address.teredo is not None:
            candidates.extend(address.teredo)
        if address in _NAT64:
            candidates.append(ipaddress.IPv4Address(int(address) & 0xFFFFFFFF))
    for candidate in candidates:
        for attribute, kind in (("is_unspecified", "unspecified"), ("is_loopback", "loopback"),
                                ("is_link_local", "link-local"), ("is_multicast", "multicast"),
                                ("is_private", "private"), ("is_reserved", "reserved")):
            if getattr(candidate, attribute):
                return kind
        if not candidate.is_global:
            return "non-public"
    return None


async def _addresses(host: str, port: int, entry: AllowEntry) -> list[str]:
    loop = asyncio.get_running_loop()
    try:
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as error:
        raise Unavailable(f"could not resolve {host!r} ({error}); check the address") from None
    found = list(dict.fromkeys(str(info[4][0]) for info in infos))
    if entry.private:
        return found
    usable: list[str] = []
    refusal = ""
    for text in found:
        try:
            reason = address_refusal(ipaddress.ip_address(text))
        except ValueError:
            reason = "unrecognised"
        if reason is None:
            usable.append(text)
        else:
            refusal = refusal or f"{text}, a {reason} address"
    if not usable:
        raise Forbidden(f"host {host!r} resolves to {refusal or 'no address'}, which agents may "
                        f"not fetch; only an admin can allow it, with the allow-list entry "
                        f"'{host}:{port}{PRIVATE_MARKER}'")
    return usable


@dataclass(frozen=True)
class Page:
    """What a fetch returned."""

    url: str
    status: int
    content_type: str
    text: str
    truncated: bool

    def render(self) -> str:
        """The page as the model reads it: a short header, then the text."""
        note = f" (cut at {MAX_BYTES} bytes)" if self.truncated else ""
        return f"HTTP {self.status} {self.content_type} from {self.url}{note}\n\n{self.text}"


@dataclass(frozen=True)
class _Response:
    status: int
    headers: http.client.HTTPMessage
    body: bytes


async def fetch(url: str, allowed_hosts: frozenset[str], timeout: float,
                max_bytes: int = MAX_BYTES) -> Page:
    """GET ``url`` if allowed, following checked redirects, all within ``timeout`` seconds."""
    check_url(url, allowed_hosts)
    try:
        async with asyncio.timeout(timeout):
            return await _follow(url, allowed_hosts, max_bytes)
    except TimeoutError:
        raise TimeoutError(f"fetching {url} took longer than {timeout:g} s in all and was "
                           "stopped; try again later or fetch a smaller page") from None


async def _follow(url: str, allowed_hosts: frozenset[str], max_bytes: int) -> Page:
    current = url
    for _ in range(MAX_REDIRECTS + 1):
        entry = check_url(current, allowed_hosts)
        scheme, host, port = _target(current)
        addresses = await _addresses(host, port, entry)
        response = await _get(current, scheme, host, port, addresses, max_bytes)
        location = response.headers.get("Location")
        if response.status in REDIRECTS and location:
            current = urljoin(current, location.strip())
            continue
        return _page(current, response, max_bytes)
    raise Invalid(f"{url} redirected more than {MAX_REDIRECTS} times; fetch the final address "
                  "directly")


async def _get(url: str, scheme: str, host: str, port: int, addresses: list[str],
               max_bytes: int) -> _Response:
    tls = ssl.create_default_context() if scheme == "https" else None
    failure: OSError | None = None
    for address in addresses:
        try:
            reader, writer = await asyncio.open_connection(
                address, port, ssl=tls, server_hostname=host if tls else None,
                limit=MAX_HEADER_BYTES)
            break
        except OSError as error:
            failure = error
    else:
        raise Unavailable(f"could not connect to {host} port {port} ({failure}); check the "
                          "address or try again later")
    try:
        parts = urlsplit(url)
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        target = _UNSAFE_IN_TARGET.sub(lambda m: quote(m.group()), target)
        name = f"[{host}]" if ":" in host else host
        if port != DEFAULT_PORTS[scheme]:
            name += f":{port}"
        writer.write(f"GET {target} HTTP/1.1\r\nHost: {name}\r\nUser-Agent: {USER_AGENT}\r\n"
                     "Accept: text/*, application/json\r\nAccept-Encoding: identity\r\n"
                     "Connection: close\r\n\r\n".encode("ascii", errors="replace"))
        await writer.drain()
        status, headers = await _head(reader, host)
        if status in REDIRECTS:
            return _Response(status, headers, b"")
        return _Response(status, headers, await _body(reader, headers, max_bytes + 1))
    except ssl.SSLError as error:
        raise Unavailable(f"the TLS connection to {host} failed ({error.reason or error}); "
                          "check the address") from None
    except ConnectionError as error:
        raise Unavailable(f"{host} closed the connection ({error}); try again later") from None
    finally:
        writer.transport.abort()


async def _head(reader: asyncio.StreamReader, host: str) -> tuple[int, http.client.HTTPMessage]:
    while True:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError:
            raise Unavailable(f"{host} closed the connection without answering; try again "
                              "later") from None
        except asyncio.LimitOverrunError:
            raise Invalid(f"{host} answered with headers over {MAX_HEADER_BYTES} bytes; it "
                          "cannot be fetched") from None
        line, _, rest = head.partition(b"\r\n")
        fields = line.split(maxsplit=2)
        if len(fields) < 2 or not fields[0].startswith(b"HTTP/") or not fields[1].isdigit():
            raise Invalid(f"{host} did not answer in HTTP; it cannot be fetched")
        status = int(fields[1])
        if not 100 <= status < 200:
            break
    try:
        headers = http.client.parse_headers(io.BytesIO(rest))
    except http.client.HTTPException as error:
        raise Invalid(f"{host} answered with malformed headers ({error}); it cannot be "
                      "fetched") from None
    return status, headers


async def _body(reader: asyncio.StreamReader, headers: http.client.HTTPMessage,
                limit: int) -> bytes:
    if "chunked" in (headers.get("Transfer-Encoding") or "").lower():
        chunks: list[bytes] = []
        size = 0
        while size < limit:
            line = await reader.readline()
            try:
                length = int(line.split(b";")[0].strip() or b"0", 16)
            except ValueError:
                break
            if length <= 0:
                break
            chunk = await _up_to(reader, min(length, limit - size))
            chunks.append(chunk)
            size += len(chunk)
            if len(chunk) < length:  # cut at the limit, or the server stopped
                break
            await reader.readline()
        return b"".join(chunks)
    length = headers.get("Content-Length")
    if length is not None and length.strip().isdigit():
        limit = min(limit, int(length))
    return await _up_to(reader, limit)


async def _up_to(reader: asyncio.StreamReader, limit: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while size < limit:
        chunk = await reader.read(min(65_536, limit - size))
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks)


def _page(url: str, response: _Response, max_bytes: int) -> Page:
    status, headers, body = response.status, response.headers, response.body
    if status >= 400:
        excerpt = " ".join(body[:300].decode("utf-8", errors="replace").split())
        kind = NotFound if status in (404, 410) else Unavailable if status >= 500 else Invalid
        raise kind(f"{url} answered HTTP {status}: {excerpt or '(no body)'}; check the "
                   "address" + (" or try again later" if status >= 500 else ""))
    truncated = len(body) > max_bytes
    content_type = headers.get_content_type()
    charset = headers.get_content_charset() or "utf-8"
    try:
        text = body[:max_bytes].decode(charset, errors="replace")
    except LookupError:  # a charset Python does not know
        text = body[:max_bytes].decode("utf-8", errors="replace")
    if content_type in ("text/html", "application/xhtml+xml"):
        text = html_text(text)
    elif not (content_type.startswith("text/") or content_type.endswith(("json", "xml"))):
        text = f"[{len(body[:max_bytes])} bytes of {content_type}, not shown]"
    return Page(url, status, content_type, text, truncated)


class _TextExtractor(HTMLParser):
    SKIPPED = frozenset({"script", "style", "noscript", "template", "svg", "head"})
    BREAKS = frozenset({"p", "div", "br", "li", "tr", "h1", "h2", "h3", "h4", "h5", "h6",
                        "section", "article", "header", "footer", "title", "pre", "table"})

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.skipping = 0
        self.title = ""
        self.in_title = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "title":
            self.in_title = True
        if tag in self.SKIPPED:
            self.skipping += 1
        elif tag in self.BREAKS:
            self.parts.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag == "title":
            self.in_title = False
        if tag in self.SKIPPED:
            self.skipping = max(0, self.skipping - 1)
        elif tag in self.BREAKS:
            self.parts.append("\n")

    def handle_data(self, data: str) -> None:
        if self.in_title:
            self.title += data
        if not self.skipping:
            self.parts.append(data)


def html_text(html: str) -> str:
    """The readable text of an HTML page: title first, no scripts or styles, tidy lines."""
    extractor = _TextExtractor()
    extractor.feed(html)
    extractor.close()
    lines = (" ".join(line.split()) for line in "".join(extractor.parts).splitlines())
    body = "\n".join(line for line in lines if line)
    title = " ".join(extractor.title.split())
    return f"{title}\n\n{body}" if title else body
