"""Fallback chains: an agent's primary model and its backups, tried in order.

A link that fails in a way another provider may not (5xx, timeout, auth, 429 after retries,
a malformed reply, a provider that cannot run here) hands the request to the next link;
the reply that finally comes says which link failed just before it (``fallback_from``). A
request the vendor refused as invalid is not passed on, and neither is a stream that failed
after its first text went out (people have seen it; a second answer would follow the first).
When every link fails, the error names each and what it said.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass

from domain.errors import RateLimited, SalonError, Unavailable
from infra.llm.base import Completion, Delta, ModelRequest, Provider
from infra.llm.failures import FALLBACK, ProviderError
from infra.llm.streams import closing

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Link:
    """One model of a chain: the provider that serves it, and its ``provider:model`` label."""

    provider: Provider
    model: str
    label: str


class FallbackChain:
    """Tries its links in order until one answers."""

    def __init__(self, links: list[Link]) -> None:
        if not links:
            raise ValueError("a fallback chain needs at least one link")
        self.links = links
        self.name = links[0].provider.name

    async def complete(self, request: ModelRequest) -> Completion:
        """The first link's reply that comes, marked with the link that failed before it."""
        failed: list[tuple[str, ProviderError]] = []
        for link in self.links:
            try:
                completion = await link.provider.complete(_for(link, request))
            except ProviderError as error:
                self._note(link, error, failed)
                continue
            return _marked(completion, failed)
        raise _exhausted(failed)

    async def stream(self, request: ModelRequest) -> AsyncIterator[Delta | Completion]:
        """The first link's stream that starts; a link failing before its first text is skipped."""
        failed: list[tuple[str, ProviderError]] = []
        for link in self.links:
            shown = False
            try:
                async with closing(link.provider.stream(_for(link, request))) as items:
                    async for item in items:
                        if isinstance(item, Completion):
                            yield _marked(item, failed)
                            return
                        shown = True
                        yield item
            except ProviderError as error:
                if shown:
                    raise error.settled() from None
                self._note(link, error, failed)
                continue
            raise Unavailable(f"{link.label} ended its stream without a reply")
        raise _exhausted(failed)

    def _note(self, link: Link, error: ProviderError,
              failed: list[tuple[str, ProviderError]]) -> None:
        if error.kind not in FALLBACK:
            raise error.settled() from None
        failed.append((link.label, error))
        position = len(failed)
        if position < len(self.links):
            log.warning("%s failed (%s); falling back to %s", link.label, error.message,
                        self.links[position].label)


def _for(link: Link, request: ModelRequest) -> ModelRequest:
    return request if request.model == link.model else \
        request.model_copy(update={"model": link.model})


def _marked(completion: Completion, failed: list[tuple[str, ProviderError]]) -> Completion:
    if not failed:
        return completion
    return completion.model_copy(update={"fallback_from": failed[-1][0]})


def _exhausted(failed: list[tuple[str, ProviderError]]) -> SalonError:
    if len(failed) == 1:
        return failed[0][1].settled()
    detail = "; ".join(error.message for _, error in failed)
    message = f"every model of the chain failed: {detail}"
    if all(error.kind == "rate_limited" for _, error in failed):
        return RateLimited(message)
    return Unavailable(message)
