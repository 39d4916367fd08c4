"""Personal fields sealed at rest: AES-GCM data keys per subject, wrapped by a master key.

What is sealed and whose it is comes from ``domain/personal.py``. Here:

- ``MasterKey``: 32 random bytes in ``SALON_MASTER_KEY_FILE`` (by default
  ``SALON_HOME/master.key``), created with mode 0600 on first start and refused when anyone
  but its owner may read it. It only wraps data keys; it never touches an event.
- ``KeyRing``: one data key per subject in ``salon_data_keys``, wrapped by the master key
  (AES-GCM, bound to the subject and key id). ``forget`` deletes the rows: every value
  sealed with them becomes unreadable, wherever it was copied (events, snapshots, exports
  taken as stored). ``rotate_master`` re-wraps every data key under a new master key.
  Keys are cached for ``KEY_CACHE_SECONDS``: a key destroyed elsewhere stops being usable in
  every process within that time, and ``forget`` answers only after it has passed.
- ``SealingMapper``: eventsourcing's mapper with the personal fields of each event (and
  snapshot) replaced by ``"§s1:" + tag + base64(kid | nonce | ciphertext)`` before
  transcoding, opened again after decoding. The ciphertext is bound to the stream id and the
  field's name, so a sealed value copied into another stream or field does not open. A value
  whose key is gone reads as an empty value of its type, and the event gets ``erased: true``.
"""

from __future__ import annotations

import base64
import hashlib
import os
import secrets
import stat
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from uuid import UUID

import psycopg
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from eventsourcing.persistence import Mapper, StoredEvent
from eventsourcing.utils import get_topic

from domain import personal
from domain.errors import Invalid, Unavailable

PREFIX = "\u00a7s1:"
KEY_CACHE_SECONDS = 2.0
TABLE = "salon_data_keys"
_EMPTY: dict[str, Any] = {"s": "", "d": {}, "l": [], "n": None, "o": None}
_SNAPSHOT_TOPIC = "eventsourcing.domain:Snapshot"


def _tag(value: Any) -> str:
    if isinstance(value, str):
        return "s"
    if isinstance(value, dict):
        return "d"
    if isinstance(value, (list, tuple)):
        return "l"
    return "o"


def empty_of(sealed: str) -> Any:
    """What a sealed value reads as once its key is destroyed."""
    value = _EMPTY.get(sealed[len(PREFIX):len(PREFIX) + 1])
    return type(value)() if isinstance(value, (dict, list)) else value


def is_sealed(value: Any) -> bool:
    """Whether ``value`` is a sealed field as stored."""
    return isinstance(value, str) and value.startswith(PREFIX)


# -- the master key ---------------------------------------------------------------------------


class MasterKey:
    """The key that wraps data keys, read from (or first written to) a file of its own."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.key = self._read_or_create()

    @property
    def kid(self) -> str:
        """A short public name of this master key (which key wrapped a row)."""
        return hashlib.sha256(b"salon-master\x00" + self.key).hexdigest()[:16]

    def _read_or_create(self) -> bytes:
        if not self.path.exists():
            self.path.parent.mkdir(parents=True, exist_ok=True)
            write_key_file(self.path, secrets.token_bytes(32))
        return read_key_file(self.path)

    def reload(self) -> bool:
        """Read the file again (another process rotated it); True when the key changed."""
        key = read_key_file(self.path)
        changed = key != self.key
        self.key = key
        return changed


def write_key_file(path: Path, key: bytes) -> None:
    """Write ``key`` to ``path`` readable by its owner only (never briefly wider)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(base64.b64encode(key).decode() + "\n")


def read_key_file(path: Path) -> bytes:
    """The 32-byte key in ``path``; refuses a file others may read or a malformed one."""
    info = path.stat()
    if info.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise Invalid(f"master key file {path} may be read by others (mode "
                      f"{stat.S_IMODE(info.st_mode):o}); run `chmod 600 {path}`")
    try:
        key = base64.b64decode(path.read_text().strip(), validate=True)
    except ValueError:
        raise Invalid(f"master key file {path} does not hold a base64 key") from None
    if len(key) != 32:
        raise Invalid(f"master key file {path} holds {len(key)} bytes, not 32")
    return key


# -- data keys --------------------------------------------------------------------------------


@dataclass
class _Cached:
    kid: bytes | None
    aead: AESGCM | None
    at: float


class KeyRing:
    """Data keys by subject, kept wrapped in PostgreSQL, cached briefly in memory."""

    def __init__(self, database_url: str, master_path: Path,
                 cache_seconds: float = KEY_CACHE_SECONDS) -> None:
        self.database_url = database_url
        self.master = MasterKey(master_path)
        self.cache_seconds = cache_seconds
        self._lock = threading.Lock()
        self._conn: psycopg.Connection[Any] | None = None
        self._by_subject: dict[str, _Cached] = {}
        self._by_kid: dict[bytes, _Cached] = {}

    # database

    def _connection(self) -> psycopg.Connection[Any]:
        if self._conn is None or self._conn.closed:
            self._conn = psycopg.connect(self.database_url, autocommit=True)
        return self._conn

    def _run(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        for attempt in (1, 2):
            try:
                with self._connection().cursor() as cursor:
                    cursor.execute(sql, params)
                    return list(cursor.fetchall()) if cursor.description else []
            except psycopg.OperationalError as error:
                self._conn = None
                if attempt == 2:
                    raise Unavailable(f"the key store cannot be reached: {error}") from None
        return []

    def create_table(self) -> None:
        """Create the key table (the process that starts the platform does this once)."""
        with self._lock:
            self._run(f"CREATE TABLE IF NOT EXISTS {TABLE} (subject text PRIMARY KEY, "
                      "kid bytea NOT NULL UNIQUE, wrapped bytea NOT NULL, master text NOT NULL, "
                      "created_at timestamptz NOT NULL DEFAULT now())")

    # wrapping

    def _wrap(self, subject: str, kid: bytes, key: bytes) -> bytes:
        nonce = secrets.token_bytes(12)
        return nonce + AESGCM(self.master.key).encrypt(nonce, key, subject.encode() + kid)

    def _unwrap(self, subject: str, kid: bytes, wrapped: bytes, master: str) -> AESGCM:
        if master != self.master.kid:
            self.master.reload()
        if master != self.master.kid:
            raise Invalid(f"data key {kid.hex()} is wrapped by master key {master}, not by the "
                          f"one in {self.master.path} ({self.master.kid})")
        try:
            key = AESGCM(self.master.key).decrypt(wrapped[:12], wrapped[12:],
                                                   subject.encode() + kid)
        except InvalidTag:
            raise Invalid(f"data key {kid.hex()} does not open with the master key in "
                          f"{self.master.path}") from None
        return AESGCM(key)

    # keys

    def key_for(self, subject: str) -> tuple[bytes, AESGCM]:
        """The data key sealing new values of ``subject``, created when it has none."""
        now = time.monotonic()
        with self._lock:
            cached = self._by_subject.get(subject)
            if cached is not None and cached.aead is not None and cached.kid is not None and \
                    now - cached.at < self.cache_seconds:
                return cached.kid, cached.aead
            rows = self._run(f"SELECT kid, wrapped, master FROM {TABLE} WHERE subject = %s",
                             (subject,))
            if not rows:
                self._create(subject)
                rows = self._run(f"SELECT kid, wrapped, master FROM {TABLE} WHERE subject = %s",
                                 (subject,))
            kid, wrapped, master = bytes(rows[0][0]), bytes(rows[0][1]), str(rows[0][2])
            aead = self._unwrap(subject, kid, wrapped, master)
            entry = _Cached(kid, aead, now)
            self._by_subject[subject] = entry
            self._by_kid[kid] = entry
            return kid, aead

    def _create(self, subject: str) -> None:
        """A new data key for ``subject``, wrapped by the master key in the file now.

        Another process may rotate the master key meanwhile: the file is read before the key
        is wrapped and again after it is stored, and a key wrapped by a master that was
        replaced in between is wrapped again by the new one.
        """
        self.master.reload()
        kid, key = secrets.token_bytes(16), AESGCM.generate_key(bit_length=256)
        wrapped_by = self.master.kid
        self._run(f"INSERT INTO {TABLE} (subject, kid, wrapped, master) "
                  "VALUES (%s, %s, %s, %s) ON CONFLICT (subject) DO NOTHING",
                  (subject, kid, self._wrap(subject, kid, key), wrapped_by))
        self.master.reload()
        if self.master.kid != wrapped_by:
            self._run(f"UPDATE {TABLE} SET wrapped = %s, master = %s "
                      "WHERE kid = %s AND master = %s",
                      (self._wrap(subject, kid, key), self.master.kid, kid, wrapped_by))

    def opener(self, kid: bytes) -> AESGCM | None:
        """The data key ``kid``, or None once it is destroyed."""
        now = time.monotonic()
        with self._lock:
            cached = self._by_kid.get(kid)
            if cached is not None and now - cached.at < self.cache_seconds:
                return cached.aead
            rows = self._run(f"SELECT subject, wrapped, master FROM {TABLE} WHERE kid = %s",
                             (kid,))
            aead = self._unwrap(str(rows[0][0]), kid, bytes(rows[0][1]), str(rows[0][2])) \
                if rows else None
            self._by_kid[kid] = _Cached(kid, aead, now)
            return aead

    def forget(self, subjects: Iterable[str], wait: bool = True) -> int:
        """Destroy the data keys of ``subjects``; with ``wait``, return once no process can
        still hold one in its cache. Returns how many keys existed."""
        listed = sorted(set(subjects))
        if not listed:
            return 0
        with self._lock:
            rows = self._run(f"DELETE FROM {TABLE} WHERE subject = ANY(%s) RETURNING kid",
                             (listed,))
            for subject in listed:
                self._by_subject.pop(subject, None)
            for row in rows:
                self._by_kid.pop(bytes(row[0]), None)
        if wait:
            time.sleep(self.cache_seconds)
        return len(rows)

    def rotate_master(self) -> int:
        """Re-wrap every data key under a new master key, then replace the key file.

        The new key is written beside the old one first; the rows are re-wrapped in one
        transaction that locks the table; the new file replaces the old before it commits (and
        the old one is put back if the commit fails). Returns how many keys were re-wrapped.
        """
        new_key = secrets.token_bytes(32)
        pending = self.master.path.with_name(self.master.path.name + ".new")
        pending.unlink(missing_ok=True)
        write_key_file(pending, new_key)
        with self._lock:
            old = self.master.key
            new_kid = hashlib.sha256(b"salon-master\x00" + new_key).hexdigest()[:16]
            with psycopg.connect(self.database_url) as conn, conn.cursor() as cursor:
                # No key is added while the rows are re-wrapped (see ``_create``).
                cursor.execute(f"LOCK TABLE {TABLE} IN EXCLUSIVE MODE")
                cursor.execute(f"SELECT subject, kid, wrapped, master FROM {TABLE}")
                rows = cursor.fetchall()
                strangers = {str(r[3]) for r in rows} - {self.master.kid}
                if strangers:
                    pending.unlink(missing_ok=True)
                    raise Invalid(f"some data keys are wrapped by another master key "
                                  f"({', '.join(sorted(strangers))}), not by the one in "
                                  f"{self.master.path}; nothing was rotated")
                for subject, kid, wrapped, _ in rows:
                    kid, wrapped = bytes(kid), bytes(wrapped)
                    key = AESGCM(old).decrypt(wrapped[:12], wrapped[12:], subject.encode() + kid)
                    nonce = secrets.token_bytes(12)
                    rewrapped = nonce + AESGCM(new_key).encrypt(nonce, key,
                                                                subject.encode() + kid)
                    cursor.execute(f"UPDATE {TABLE} SET wrapped = %s, master = %s "
                                   "WHERE subject = %s", (rewrapped, new_kid, subject))
                # The new file is in place before the lock goes, so a key created meanwhile
                # elsewhere sees it once its insert gets through (``_create``).
                os.replace(pending, self.master.path)
                try:
                    conn.commit()
                except BaseException:
                    self.master.path.unlink(missing_ok=True)
                    write_key_file(self.master.path, old)
                    raise
            self.master.key = new_key
            return len(rows)

    def count(self) -> int:
        """How many data keys exist."""
        with self._lock:
            return int(self._run(f"SELECT count(*) FROM {TABLE}")[0][0])

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None


# -- sealing fields ---------------------------------------------------------------------------


class Sealer:
    """Seals and opens one field value, bound to its stream and field name."""

    def __init__(self, keys: KeyRing, encode: Any, decode: Any) -> None:
        self.keys = keys
        self.encode = encode
        self.decode = decode

    @staticmethod
    def _aad(stream_id: UUID, field: str) -> bytes:
        return stream_id.bytes + field.encode()

    def seal(self, stream_id: UUID, field: str, subject: str, value: Any) -> str:
        kid, aead = self.keys.key_for(subject)
        nonce = secrets.token_bytes(12)
        sealed = aead.encrypt(nonce, self.encode(value), self._aad(stream_id, field))
        return PREFIX + _tag(value) + base64.b64encode(kid + nonce + sealed).decode()

    def open(self, stream_id: UUID, field: str, value: str) -> tuple[bool, Any]:
        """(True, the value) or (False, the empty value) when its key is destroyed."""
        raw = base64.b64decode(value[len(PREFIX) + 1:])
        kid, nonce, sealed = raw[:16], raw[16:28], raw[28:]
        aead = self.keys.opener(kid)
        if aead is None:
            return False, empty_of(value)
        try:
            return True, self.decode(aead.decrypt(nonce, sealed, self._aad(stream_id, field)))
        except InvalidTag:
            raise Invalid(f"a sealed {field!r} of stream {stream_id} does not open: it was "
                          "altered or copied from elsewhere") from None


class SealingMapper(Mapper[UUID]):
    """eventsourcing's mapper, sealing personal fields on the way in and opening them out."""

    def __init__(self, inner: Mapper[UUID], keys: KeyRing) -> None:
        super().__init__(inner.transcoder, inner.compressor, inner.cipher)
        self.keys = keys
        self.sealer = Sealer(keys, self.transcoder.encode, self.transcoder.decode)

    def to_stored_event(self, domain_event: Any) -> StoredEvent:
        topic = get_topic(type(domain_event))
        sealed = self.sealed_state(topic, domain_event.originator_id, vars(domain_event))
        if sealed is None:
            return super().to_stored_event(domain_event)
        copy = object.__new__(type(domain_event))
        object.__setattr__(copy, "__dict__", sealed)
        return super().to_stored_event(copy)

    def to_domain_event(self, stored_event: StoredEvent) -> Any:
        domain_event = super().to_domain_event(stored_event)
        state = vars(domain_event)
        if not self.open_state(stored_event.topic, stored_event.originator_id, state):
            state["erased"] = True
        return domain_event

    # the rules of domain/personal.py applied to a state dict

    def sealed_state(self, topic: str, stream_id: UUID, state: dict[str, Any],
                     ) -> dict[str, Any] | None:
        """A copy of ``state`` with its personal fields sealed, or None when it has none."""
        if topic == _SNAPSHOT_TOPIC:
            return self._sealed_snapshot(stream_id, state)
        rule = personal.rule_for(topic)
        if rule is None:
            return None
        out = {k: v for k, v in state.items() if k not in ("erased", "redacted")}
        subject = rule.subject(stream_id, state)
        for field in rule.fields:
            value = out.get(field)
            if value is None or subject is None:
                continue
            if is_sealed(value):
                raise Invalid(f"field {field!r} arrives sealed already; Salon seals it itself")
            out[field] = self.sealer.seal(stream_id, field, subject, value)
        return out

    def _sealed_snapshot(self, stream_id: UUID, state: dict[str, Any]) -> dict[str, Any] | None:
        aggregate = str(state.get("topic", ""))
        whole = personal.SNAPSHOTS.get(aggregate, ())
        people = personal.SNAPSHOT_PEOPLE.get(aggregate, ())
        if not whole and not people:
            return None
        inner = dict(state.get("state") or {})
        for field in whole:
            if inner.get(field) is not None:
                inner[field] = self.sealer.seal(stream_id, field, personal.stream(stream_id),
                                                inner[field])
        for field in people:
            part = inner.get(field)
            if isinstance(part, dict):
                inner[field] = {who: self.sealer.seal(stream_id, f"{field}/{who}",
                                                      personal.person(who), value)
                                for who, value in part.items()}
        return {**state, "state": inner}

    def open_state(self, topic: str, stream_id: UUID, state: dict[str, Any]) -> bool:
        """Open the sealed fields of ``state`` in place; False when a key was destroyed."""
        readable = True
        if topic == _SNAPSHOT_TOPIC:
            inner = state.get("state")
            if not isinstance(inner, dict):
                return True
            aggregate = str(state.get("topic", ""))
            for field in personal.SNAPSHOTS.get(aggregate, ()):
                if is_sealed(inner.get(field)):
                    ok, inner[field] = self.sealer.open(stream_id, field, inner[field])
                    readable = readable and ok
            for field in personal.SNAPSHOT_PEOPLE.get(aggregate, ()):
                part = inner.get(field)
                if isinstance(part, dict):
                    opened = {}
                    for who, value in part.items():
                        ok, value = self.sealer.open(stream_id, f"{field}/{who}", value) \
                            if is_sealed(value) else (True, value)
                        if ok:
                            opened[who] = value
                    inner[field] = opened
            return readable
        rule = personal.rule_for(topic)
        if rule is None:
            return True
        for field in rule.fields:
            value = state.get(field)
            if is_sealed(value):
                ok, state[field] = self.sealer.open(stream_id, field, value)
                readable = readable and ok
        return readable
