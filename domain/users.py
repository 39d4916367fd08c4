"""Users and their login tokens. Only hashes of tokens are ever recorded."""

from __future__ import annotations

import hashlib
import secrets
from uuid import UUID

from eventsourcing.domain import Aggregate, event

from domain.errors import Invalid
from domain.ids import check_name, user_id

ROLES = ("admin", "member")


def hash_token(token: str) -> str:
    """The recorded form of a token."""
    return hashlib.sha256(token.encode()).hexdigest()


def new_token(user_name: str) -> str:
    """A fresh secret token that names its user, so it can be checked without an index."""
    return f"{user_name}.{secrets.token_urlsafe(24)}"


def token_user(token: str) -> str:
    """The user name a token claims to belong to."""
    name, dot, secret = token.partition(".")
    if not dot or not secret:
        raise Invalid("a token looks like NAME.SECRET")
    return check_name(name, "user")


class User(Aggregate):
    """A person (or program) who logs in with tokens."""

    @staticmethod
    def create_id(name: str, **_: object) -> UUID:
        """Users are found by name: the stream id is derived from it."""
        return user_id(name)

    @event("UserRegistered")
    def __init__(self, name: str, role: str) -> None:
        self.name = name
        self.role = role
        self.token_hashes: dict[str, str] = {}

    @classmethod
    def register(cls, name: str, role: str = "member") -> User:
        """Validate and record a new user."""
        check_name(name, "user")
        if role not in ROLES:
            raise Invalid(f"role must be one of {', '.join(ROLES)}, not {role!r}")
        return cls(name=name, role=role)

    @property
    def is_admin(self) -> bool:
        """Whether this user administers the installation."""
        return self.role == "admin"

    def issue_token(self, label: str = "") -> str:
        """Issue a token; the secret is returned once and only its hash is recorded."""
        token = new_token(self.name)
        self._token_issued(token_hash=hash_token(token), label=label[:100])
        return token

    @event("TokenIssued")
    def _token_issued(self, token_hash: str, label: str) -> None:
        self.token_hashes[token_hash] = label

    def revoke_token(self, token_hash: str) -> None:
        """Stop accepting a token."""
        if token_hash in self.token_hashes:
            self._token_revoked(token_hash=token_hash)

    @event("TokenRevoked")
    def _token_revoked(self, token_hash: str) -> None:
        self.token_hashes.pop(token_hash, None)

    def accepts(self, token: str) -> bool:
        """Whether ``token`` is a live token of this user."""
        return hash_token(token) in self.token_hashes
