"""Fetching a web page for an agent: only http(s), only allowed hosts, bounded in time and size.

Allowed hosts are exact names (``example.org``), ``host:port``, or ``*.example.org`` for the
subdomains of a name. Redirects are followed only to allowed hosts. The standard library's
``urllib`` does the I/O in a worker thread, so no HTTP client is a dependency of ``tools``.
"""

from __future__ import annotations

import asyncio
import urllib.error
import urllib.request
from dataclasses import dataclass
from html.parser import HTMLParser
from http.client import HTTPMessage
from typing import Any
from urllib.parse import urlsplit

from domain.errors import Forbidden, Invalid, NotFound, Unavailable

MAX_BYTES = 1_000_000
USER_AGENT = "Salon-agent/0.1"


def host_allowed(url: str, allowed_hosts: frozenset[str]) -> bool:
    """Whether ``url``'s host (or host:port) is on the allow list."""
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    if not host:
        return False
    try:
        port = parts.port
    except ValueError:
        return False
    for entry in allowed_hosts:
        if entry.startswith("*."):
            if host.endswith(entry[1:]) and host != entry[2:]:
                return True
        elif entry == host or (port is not None and entry == f"{host}:{port}"):
            return True
    return False


def check_url(url: str, allowed_hosts: frozenset[str]) -> None:
    """Raise ``Invalid`` for a non-http(s) URL and ``Forbidden`` for a host not allowed."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise Invalid(f"{url!r} is not an http(s) URL; only http:// and https:// can be fetched")
    if not host_allowed(url, allowed_hosts):
        hosts = ", ".join(sorted(allowed_hosts)) or "none"
        raise Forbidden(f"host {parts.hostname!r} is not on this agent's list of allowed hosts "
                        f"({hosts}); ask an owner to allow it, or fetch an allowed host")


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


async def fetch(url: str, allowed_hosts: frozenset[str], timeout: float,
                max_bytes: int = MAX_BYTES) -> Page:
    """GET ``url`` if allowed, following redirects only to allowed hosts."""
    check_url(url, allowed_hosts)
    return await asyncio.to_thread(_fetch, url, allowed_hosts, timeout, max_bytes)


class _AllowedRedirects(urllib.request.HTTPRedirectHandler):
    def __init__(self, allowed_hosts: frozenset[str]) -> None:
        self.allowed_hosts = allowed_hosts

    def redirect_request(self, req: urllib.request.Request, fp: Any, code: int, msg: str,
                         headers: HTTPMessage, newurl: str) -> urllib.request.Request | None:
        check_url(newurl, self.allowed_hosts)
        return super().redirect_request(req, fp, code, msg, headers, newurl)


def _fetch(url: str, allowed_hosts: frozenset[str], timeout: float, max_bytes: int) -> Page:
    opener = urllib.request.build_opener(_AllowedRedirects(allowed_hosts))
    request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT,
                                                   "Accept": "text/*, application/json"})
    try:
        with opener.open(request, timeout=timeout) as response:
            body = response.read(max_bytes + 1)
            status = response.status
            final_url = response.geturl()
            headers = response.headers
    except urllib.error.HTTPError as error:
        body = error.read(max_bytes + 1) if error.fp is not None else b""
        status, final_url, headers = error.code, error.geturl(), error.headers
    except urllib.error.URLError as error:
        if isinstance(error.reason, TimeoutError):
            raise TimeoutError(f"{url} did not answer within {timeout:g} s") from None
        raise Unavailable(f"could not fetch {url}: {error.reason}; check the address or try "
                          "again later") from None
    if status >= 400:
        excerpt = " ".join(body[:300].decode("utf-8", errors="replace").split())
        kind = NotFound if status in (404, 410) else Unavailable if status >= 500 else Invalid
        raise kind(f"{final_url} answered HTTP {status}: {excerpt or '(no body)'}; check the "
                   "address" + (" or try again later" if status >= 500 else ""))
    truncated = len(body) > max_bytes
    content_type = headers.get_content_type() if headers else "application/octet-stream"
    charset = (headers.get_content_charset() if headers else None) or "utf-8"
    text = body[:max_bytes].decode(charset, errors="replace")
    if content_type in ("text/html", "application/xhtml+xml"):
        text = html_text(text)
    elif not (content_type.startswith("text/") or content_type.endswith(("json", "xml"))):
        text = f"[{len(body[:max_bytes])} bytes of {content_type}, not shown]"
    return Page(final_url, status, content_type, text, truncated)


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
