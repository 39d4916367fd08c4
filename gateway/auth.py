"""Who is speaking: users, their tokens, their grants, and the check a ``hello`` goes through."""

from __future__ import annotations

import time

from domain import personal
from domain.capabilities import Capabilities
from domain.errors import Conflict, Invalid, NotFound, Unauthenticated
from domain.ids import agent_id, user_id
from domain.policy import Principal
from domain.threads import thread_id
from domain.users import User, hash_token, token_user
from infra.store import EventStore

__all__ = ["Accounts", "Principal"]
DAY = 86_400.0


class Accounts:
    """Registers users and checks tokens. The gateway process is the writer of user streams."""

    def __init__(self, store: EventStore, token_days: float | None = None) -> None:
        self.store = store
        self.token_days = token_days

    def register(self, name: str, role: str = "member") -> User:
        """Record a new user; Conflict if the name is taken (by a person or an agent)."""
        if self.store.exists(user_id(name)):
            raise Conflict(f"user {name!r} exists already")
        if self.store.exists(agent_id(name)):
            raise Conflict(f"{name!r} is an agent's name; a name is a person or an agent, "
                           "never both: pick another")
        user = User.register(name, role)
        self.store.save(user.collect_events())
        return user

    def user(self, name: str) -> User:
        """The user called ``name``, or NotFound."""
        return self.store.get(User, user_id(name), f"user {name!r} does not exist; "
                              "`salon token create NAME` registers one")

    def issue_token(self, name: str, role: str = "member", label: str = "",
                    days: float | None = None) -> str:
        """A new token for ``name``, registering the user with ``role`` first if needed."""
        try:
            user = self.user(name)
        except NotFound:
            user = self.register(name, role)
        days = days if days is not None else self.token_days
        token = user.issue_token(label) if days is None else \
            user.issue_expiring_token(label, time.time() + days * DAY)
        self.store.save(user.collect_events())
        return token

    def revoke(self, name: str, token: str | None = None) -> int:
        """Stop accepting ``token`` (or every token) of ``name``; returns how many stopped."""
        user = self.user(name)
        if token is None:
            count = user.revoke_all()
        else:
            before = len(user.token_hashes)
            user.revoke_token(hash_token(token))
            count = before - len(user.token_hashes)
        self.store.save(user.collect_events())
        return count

    def forget(self, name: str, by: str) -> dict[str, int]:
        """Erase what ``name`` said (crypto-shredding): record ``UserForgotten`` and revoke
        their tokens, then destroy their data key and the keys of the threads of the rooms
        they wrote in (titles and summaries may quote them). Returns once no process can
        still open their words (the key cache has run out)."""
        user = self.user(name)
        rooms = self.store.rooms_written_by(name)
        revoked = user.forget(by)
        self.store.save(user.collect_events())
        keys = self.store.forget([personal.person(name),
                                  *(personal.stream(thread_id(r)) for r in rooms)])
        return {"tokens_revoked": revoked, "rooms": len(rooms), "keys_destroyed": keys}

    def grant(self, name: str, capabilities: Capabilities, by: str) -> dict[str, list[str]]:
        """Set the capabilities ``name`` may hand to agents they own."""
        user = self.user(name)
        user.grant(capabilities.as_dict(), by)
        self.store.save(user.collect_events())
        return user.grants

    def grants(self, name: str) -> Capabilities:
        """What ``name`` was granted (nothing for an unknown name)."""
        try:
            return Capabilities.of(self.user(name).grants)
        except NotFound:
            return Capabilities()

    def authenticate(self, token: str) -> Principal:
        """The user a token belongs to (with the token's expiry), or Unauthenticated."""
        try:
            name = token_user(token)
            user = self.store.get(User, user_id(name), "unknown user")
        except (Invalid, NotFound):
            raise Unauthenticated("the token is not valid; ask an admin for a new one") from None
        if not user.accepts(token, time.time()):
            raise Unauthenticated("the token is not valid (revoked or expired); ask an admin "
                                  "for a new one")
        return Principal(user.name, user.role, expires_at=user.expires_at(token))
