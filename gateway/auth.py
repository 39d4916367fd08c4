"""Who is speaking: users, their tokens, and the check a ``hello`` frame goes through."""

from __future__ import annotations

from dataclasses import dataclass

from domain.errors import Conflict, Invalid, NotFound, Unauthenticated
from domain.ids import user_id
from domain.users import User, token_user
from infra.store import EventStore


@dataclass(frozen=True)
class Principal:
    """An authenticated user."""

    name: str
    role: str

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"


class Accounts:
    """Registers users and checks tokens. The gateway process is the writer of user streams."""

    def __init__(self, store: EventStore) -> None:
        self.store = store

    def register(self, name: str, role: str = "member") -> User:
        """Record a new user; Conflict if the name is taken."""
        if self.store.exists(user_id(name)):
            raise Conflict(f"user {name!r} exists already")
        user = User.register(name, role)
        self.store.save(user.collect_events())
        return user

    def issue_token(self, name: str, role: str = "member", label: str = "") -> str:
        """A new token for ``name``, registering the user with ``role`` first if needed."""
        try:
            user = self.store.get(User, user_id(name), f"user {name!r} does not exist")
        except NotFound:
            user = self.register(name, role)
        token = user.issue_token(label)
        self.store.save(user.collect_events())
        return token

    def authenticate(self, token: str) -> Principal:
        """The user a token belongs to, or Unauthenticated."""
        try:
            name = token_user(token)
            user = self.store.get(User, user_id(name), "unknown user")
        except (Invalid, NotFound):
            raise Unauthenticated("the token is not valid; ask an admin for a new one") from None
        if not user.accepts(token):
            raise Unauthenticated("the token is not valid; ask an admin for a new one")
        return Principal(user.name, user.role)
