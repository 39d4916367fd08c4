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
    def _token_issued(self, token_hash: str, label: str, expires_at: float | None = None) -> None:
        self.token_hashes[token_hash] = label
        if expires_at is not None:
            self.__dict__.setdefault("token_expiry", {})[token_hash] = expires_at

    def issue_expiring_token(self, label: str, expires_at: float) -> str:
        """Issue a token that stops working at ``expires_at`` (seconds since the epoch)."""
        token = new_token(self.name)
        self._token_issued(token_hash=hash_token(token), label=label[:100],
                           expires_at=float(expires_at))
        return token

    def revoke_token(self, token_hash: str) -> None:
        """Stop accepting a token."""
        if token_hash in self.token_hashes:
            self._token_revoked(token_hash=token_hash)

    def revoke_all(self) -> int:
        """Stop accepting every token of this user; returns how many were live."""
        live = list(self.token_hashes)
        for token_hash in live:
            self._token_revoked(token_hash=token_hash)
        return len(live)

    @event("TokenRevoked")
    def _token_revoked(self, token_hash: str) -> None:
        self.token_hashes.pop(token_hash, None)

    def accepts(self, token: str, now: float | None = None) -> bool:
        """Whether ``token`` is a live (issued, not revoked, not expired) token of this user."""
        token_hash = hash_token(token)
        if token_hash not in self.token_hashes:
            return False
        expires_at = getattr(self, "token_expiry", {}).get(token_hash)
        return expires_at is None or now is None or now < expires_at

    def expires_at(self, token: str) -> float | None:
        """When ``token`` expires (seconds since the epoch), None if it does not."""
        return getattr(self, "token_expiry", {}).get(hash_token(token))

    @property
    def grants(self) -> dict[str, list[str]]:
        """Capabilities an admin granted this user, to hand to agents they own."""
        return dict(getattr(self, "granted", {}))

    def grant(self, capabilities: dict[str, list[str]], by: str) -> None:
        """Record the capabilities this user holds now (replacing earlier grants)."""
        if capabilities != self.grants:
            self._capabilities_granted(capabilities=capabilities, by=by)

    @event("CapabilitiesGranted")
    def _capabilities_granted(self, capabilities: dict[str, list[str]], by: str) -> None:
        self.granted = dict(capabilities)

    @property
    def forgotten(self) -> bool:
        """Whether this person's words were erased (their data key destroyed)."""
        return bool(vars(self).get("forgotten_by"))

    def forget(self, by: str) -> int:
        """Record that this person is forgotten; every token stops. Returns tokens revoked.

        The erasure itself is the destruction of their data key (infra/sealing.py); this
        event tells read models to purge what they copied of their words.
        """
        revoked = self.revoke_all()
        self._user_forgotten(name=self.name, by=by)
        return revoked

    @event("UserForgotten")
    def _user_forgotten(self, name: str, by: str) -> None:
        self.forgotten_by = by
    # -- consent to being remembered by agents ----------------------------------------------

    def consents(self, room: str | None = None) -> bool:
        """Whether agents may form long-term memories and facts about this person in ``room``
        (None: anywhere no room setting says otherwise). A room's own setting wins over the
        person's default, which is on."""
        settings: dict[str, str] = getattr(self, "memory_consent", {})
        found = settings.get(room) if room else None
        return (found or settings.get("", "on")) == "on"

    @property
    def consent(self) -> dict[str, object]:
        """This person's settings: ``memory`` (their default) and ``rooms`` (room: on|off)."""
        settings: dict[str, str] = getattr(self, "memory_consent", {})
        return {"memory": settings.get("", "on"),
                "rooms": {room: value for room, value in sorted(settings.items()) if room}}

    def set_consent(self, memory: str, room: str | None = None) -> bool:
        """Record whether agents may remember this person (in ``room``, or by default);
        returns False when that was the setting already."""
        if memory not in CONSENT:
            raise Invalid(f"memory consent is 'on' or 'off', not {memory!r}")
        if room is not None:
            check_name(room, "room")
        settings: dict[str, str] = getattr(self, "memory_consent", {})
        if settings.get(room or "", None if room else "on") == memory:
            return False
        self._memory_consent_changed(name=self.name, memory=memory, room=room)
        return True

    @event("MemoryConsentChanged")
    def _memory_consent_changed(self, name: str, memory: str, room: str | None) -> None:
        self.__dict__.setdefault("memory_consent", {})[room or ""] = memory


CONSENT = ("on", "off")
