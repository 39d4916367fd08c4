"""When to try a failed call again: exponential backoff with jitter, honouring ``retry-after``."""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from infra.llm.failures import ProviderError


@dataclass(frozen=True)
class RetryPolicy:
    """How often and after what pause a retryable failure is tried again.

    The n-th retry waits ``base_delay * 2**(n-1)`` capped at ``max_delay``, of which a random
    half is jitter (so many callers do not retry in step). A vendor's ``retry-after`` is
    honoured as a floor; one asking for more than ``max_retry_after`` seconds is not waited
    for, so a fallback can answer instead.
    """

    attempts: int = 3                 # tries in all, the first included
    base_delay: float = 0.5
    max_delay: float = 20.0
    max_retry_after: float = 60.0
    rng: random.Random = field(default_factory=random.Random, compare=False, repr=False)

    def delay(self, error: ProviderError, attempt: int) -> float | None:
        """Seconds to wait before try ``attempt + 1`` after ``error``, or None: do not retry."""
        if not error.retryable or attempt >= self.attempts:
            return None
        backoff = min(self.max_delay, self.base_delay * 2.0 ** (attempt - 1))
        jittered: float = backoff / 2 + self.rng.uniform(0, backoff / 2)
        if error.retry_after is None:
            return jittered
        if error.retry_after > self.max_retry_after:
            return None
        # At least what the vendor asked, plus a little jitter so retries do not align.
        return error.retry_after + self.rng.uniform(0, min(jittered, 1.0) / 10)


NO_RETRIES = RetryPolicy(attempts=1)
