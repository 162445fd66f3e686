"""Who may open the console: tokens from the settings, stored hashed, checked in constant time.

A request carries ``Authorization: Bearer TOKEN`` or HTTP Basic (user name and token, so a
browser can log in). Token hashes are ``sha256:HEX`` (for a generated token: 256 random bits
need no slow hash) or ``scrypt:N:R:P:SALT:HASH`` (for a password a person chose). Failed
attempts are counted per client address; past ``MAX_FAILURES`` in ``WINDOW_S`` that address gets
429 until the window has passed.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime

from ivr_server.config.settings import ConsoleUser

MAX_FAILURES = 10
WINDOW_S = 60.0
MAX_CLIENTS = 1024  # addresses tracked; the oldest is forgotten past this
SCRYPT = (2**14, 8, 1)


@dataclass(frozen=True)
class Login:
    user: str
    role: str

    @property
    def supervisor(self) -> bool:
        return self.role == "supervisor"


def new_token() -> str:
    return secrets.token_urlsafe(32)


def hash_token(token: str, slow: bool = False) -> str:
    """What goes into ``console_users.NAME.token_hash``."""
    if not slow:
        return "sha256:" + hashlib.sha256(token.encode()).hexdigest()
    n, r, p = SCRYPT
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(token.encode(), salt=salt, n=n, r=r, p=p)
    return f"scrypt:{n}:{r}:{p}:{salt.hex()}:{digest.hex()}"


def token_matches(token: str, stored: str) -> bool:
    kind, _, rest = stored.partition(":")
    try:
        if kind == "sha256":
            return hmac.compare_digest(hashlib.sha256(token.encode()).hexdigest(), rest.lower())
        if kind == "scrypt":
            n, r, p, salt, digest = rest.split(":")
            mine = hashlib.scrypt(token.encode(), salt=bytes.fromhex(salt), n=int(n), r=int(r), p=int(p))
            return hmac.compare_digest(mine.hex(), digest.lower())
    except ValueError:  # a malformed hash in the settings matches nothing
        return False
    return False


class Authenticator:
    """Thread-safe: the listener's threads call ``check`` concurrently."""

    def __init__(
        self,
        users: Mapping[str, ConsoleUser],
        clock: Callable[[], float] = time.monotonic,
        today: Callable[[], date] = lambda: datetime.now(UTC).date(),
        max_failures: int = MAX_FAILURES,
    ) -> None:
        self._users = dict(users)
        self.max_failures = max_failures
        self._clock, self._today = clock, today
        self._failures: OrderedDict[str, tuple[int, float]] = OrderedDict()  # address -> (count, since)
        self._lock = threading.Lock()

    def check(self, authorization: str, address: str) -> tuple[Login | None, str]:
        """(the login, "") or (None, why: "missing", "wrong", "expired", "too many attempts")."""
        if self._blocked(address):
            return None, "too many attempts"
        if not authorization:
            return None, "missing"
        name, user = self._find(authorization)
        if user is None or name is None:
            self._failed(address)
            return None, "wrong"
        if user.expires is not None and self._today() > user.expires:
            self._failed(address)
            return None, "expired"
        return Login(name, user.role), ""

    def _find(self, authorization: str) -> tuple[str | None, ConsoleUser | None]:
        scheme, _, value = authorization.strip().partition(" ")
        value = value.strip()
        if scheme.lower() == "bearer" and value:
            found = None  # every user is compared: the time taken says nothing about who matched
            for name, user in self._users.items():
                if user.token_hash.startswith("sha256:") and token_matches(value, user.token_hash):
                    found = name
            return (found, self._users[found]) if found else (None, None)
        if scheme.lower() == "basic" and value:
            try:
                name, _, token = base64.b64decode(value, validate=True).decode().partition(":")
            except (binascii.Error, UnicodeDecodeError):
                return None, None
            known = self._users.get(name)
            ok = known is not None and token_matches(token, known.token_hash)
            return (name, known) if ok else (None, None)
        return None, None

    def _blocked(self, address: str) -> bool:
        with self._lock:
            count, since = self._failures.get(address, (0, 0.0))
            if count and self._clock() - since > WINDOW_S:
                del self._failures[address]
                return False
            return count >= self.max_failures

    def _failed(self, address: str) -> None:
        with self._lock:
            count, since = self._failures.pop(address, (0, self._clock()))
            self._failures[address] = (count + 1, since)
            while len(self._failures) > MAX_CLIENTS:
                self._failures.popitem(last=False)
