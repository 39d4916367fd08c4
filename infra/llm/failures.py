"""How a provider call failed, in vendor-neutral terms that decide retries and fallbacks.

Adapters turn their SDK's exceptions into ``ProviderError`` with a ``kind``; the guard retries
the retryable kinds with backoff, and a fallback chain moves on for the kinds in ``FALLBACK``.
Messages are scrubbed of keys and say what to do.
"""

from __future__ import annotations

import email.utils
import json
import time
from collections.abc import Mapping
from typing import Any, Literal

from domain.errors import Invalid, RateLimited, SalonError, Unavailable
from infra.llm.keys import scrub

Kind = Literal["rate_limited", "server", "timeout", "connection", "auth", "invalid",
               "malformed", "unavailable"]
# Worth trying again at the same provider after a pause.
RETRYABLE: frozenset[str] = frozenset({"rate_limited", "server", "timeout", "connection"})
# Worth asking the next provider of a chain: 5xx, timeouts, auth errors, 429 after retries,
# replies that are not what the vendor's format promises, and providers that cannot run here.
FALLBACK: frozenset[str] = RETRYABLE | {"auth", "malformed", "unavailable"}
MAX_DETAIL = 300


class ProviderError(Unavailable):
    """A model call that failed; ``kind`` says how, ``retry_after`` what the vendor asked."""

    def __init__(self, message: str, kind: Kind = "server", status: int | None = None,
                 retry_after: float | None = None, final: bool = False) -> None:
        super().__init__(scrub(message))
        self.kind: Kind = kind
        self.status = status
        self.retry_after = retry_after
        # Not to be retried whatever its kind (our own rate limiter has already waited).
        self.final = final

    def __reduce__(self) -> tuple[type[ProviderError], tuple[Any, ...]]:
        return (type(self), (self.message, self.kind, self.status, self.retry_after, self.final))

    @property
    def retryable(self) -> bool:
        """Whether the same provider may succeed if asked again."""
        return self.kind in RETRYABLE and not self.final

    def settled(self) -> SalonError:
        """The domain error a caller sees once nothing more will be tried."""
        if self.kind == "rate_limited":
            return RateLimited(self.message)
        if self.kind == "invalid":
            return Invalid(self.message)
        return Unavailable(self.message)


def kind_of_status(status: int) -> Kind:
    """The kind of failure an HTTP status means."""
    if status == 429:
        return "rate_limited"
    if status in (401, 403):
        return "auth"
    if status in (408,):
        return "timeout"
    if status in (404,):
        return "unavailable"
    if status == 409 or status >= 500:
        return "server"
    return "invalid"


ADVICE: dict[str, str] = {
    "rate_limited": "the vendor is rate limiting; slow down, raise the limit, or add a fallback",
    "server": "the vendor's server failed; it was retried; add a fallback to ride it out",
    "timeout": "the call timed out; raise the timeout or add a fallback",
    "connection": "the endpoint could not be reached; check base_url and that the server runs",
    "auth": "the key was refused; check the environment variable that holds it",
    "invalid": "the request was refused as invalid; check the model name and parameters",
    "malformed": "the reply did not follow the vendor's format; check that base_url points "
                 "at the right kind of endpoint",
    "unavailable": "check the model name and that the provider is installed and reachable",
}


def http_failure(label: str, status: int, detail: str,
                 headers: Mapping[str, str] | None = None) -> ProviderError:
    """A ProviderError for an HTTP error answer from ``label`` ("provider:model")."""
    kind = kind_of_status(status)
    short = " ".join(scrub(detail).split())[:MAX_DETAIL]
    return ProviderError(f"{label} answered HTTP {status}: {short or 'no detail'} "
                         f"({ADVICE[kind]})", kind, status, retry_after_of(headers))


def failure(label: str, kind: Kind, detail: str) -> ProviderError:
    """A ProviderError of ``kind`` for ``label`` with advice on what to do."""
    short = " ".join(scrub(detail).split())[:MAX_DETAIL]
    return ProviderError(f"{label}: {short} ({ADVICE[kind]})", kind)


def retry_after_of(headers: Mapping[str, str] | None, now: float | None = None) -> float | None:
    """Seconds to wait as the vendor asked: ``retry-after-ms``, ``retry-after`` seconds or date."""
    if not headers:
        return None
    lowered = {k.lower(): v for k, v in headers.items()}
    milliseconds = lowered.get("retry-after-ms")
    if milliseconds:
        try:
            return max(0.0, float(milliseconds) / 1000)
        except ValueError:
            pass
    value = lowered.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def error_detail(body: Any, fallback: str) -> str:
    """The human part of a vendor's error body (``{"error": {"message": …}}`` and the like)."""
    if isinstance(body, dict):
        inner = body.get("error", body)
        if isinstance(inner, dict) and isinstance(inner.get("message"), str):
            return str(inner["message"])
        return json.dumps(body)[:MAX_DETAIL]
    if isinstance(body, str):
        return body
    return fallback
