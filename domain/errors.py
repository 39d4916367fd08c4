"""One error hierarchy, each class mapped once to a protocol code and a CLI exit status."""

from __future__ import annotations


class SalonError(Exception):
    """Base of every error Salon reports to a person or a program."""

    code = "internal"
    exit_status = 1

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __reduce__(self) -> tuple[type[SalonError], tuple[str]]:
        # Errors cross Ray process boundaries; keep them picklable with one argument.
        return (type(self), (self.message,))


class Invalid(SalonError):
    code = "invalid"
    exit_status = 2


class NotFound(SalonError):
    code = "not_found"
    exit_status = 3


class Forbidden(SalonError):
    code = "forbidden"
    exit_status = 4


class Conflict(SalonError):
    code = "conflict"
    exit_status = 5


class RateLimited(SalonError):
    code = "rate_limited"
    exit_status = 6


class Unavailable(SalonError):
    code = "unavailable"
    exit_status = 7


class Unauthenticated(SalonError):
    code = "unauthenticated"
    exit_status = 8
