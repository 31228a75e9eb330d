"""Login attempts: throttling and lock-out (issue 15). A user name with 5 wrong passwords in 15
minutes is locked out for 15 minutes (even the right password is then refused), and a client
address with 20 wrong passwords in 15 minutes (whatever the names) is refused as long; the
lock-out is audited. Counted in the server process (each worker of ``serve --workers N`` counts
its own: at most N times as many tries); an unknown name is counted as a known one, so that the
answers tell no names apart.
"""
from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass

from .audit import Change, append
from .models import User

MAX_PER_NAME = 5
MAX_PER_CLIENT = 20
WINDOW_S = 15 * 60
LOCKOUT_S = 15 * 60


class LockedOut(Exception):
    """Too many wrong passwords: try again after ``retry_after`` seconds."""

    def __init__(self, retry_after: int):
        super().__init__(f"too many wrong passwords: try again in {max(1, retry_after // 60)} minute(s)")
        self.retry_after = retry_after


@dataclass
class _Tries:
    failures: deque
    locked_until: float = 0.0


class LoginThrottle:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._names: dict[str, _Tries] = {}
        self._clients: dict[str, _Tries] = {}

    def check(self, name: str, client: str) -> None:
        """Raise ``LockedOut`` if the name or the client is locked out now."""
        now = time.monotonic()
        with self._lock:
            for tries in (self._names.get(name.lower()), self._clients.get(client)):
                if tries is not None and tries.locked_until > now:
                    raise LockedOut(int(tries.locked_until - now) + 1)

    def failed(self, name: str, client: str) -> bool:
        """Count a wrong password; True when it locks the name or the client out (audit it)."""
        now = time.monotonic()
        locked = False
        with self._lock:
            if len(self._names) > 100_000:  # a flood of names: forget the oldest state, keep the lock-outs
                self._names = {k: v for k, v in self._names.items() if v.locked_until > now}
            for table, key, limit in ((self._names, name.lower(), MAX_PER_NAME), (self._clients, client, MAX_PER_CLIENT)):
                tries = table.setdefault(key, _Tries(deque()))
                while tries.failures and now - tries.failures[0] > WINDOW_S:
                    tries.failures.popleft()
                tries.failures.append(now)
                if len(tries.failures) >= limit and tries.locked_until <= now:
                    tries.locked_until = now + LOCKOUT_S
                    tries.failures.clear()
                    locked = True
        return locked

    def succeeded(self, name: str) -> None:
        with self._lock:
            self._names.pop(name.lower(), None)


def login(store, throttle: LoginThrottle, name: str, password: str, client: str) -> User | None:
    """The user, if the password is right and neither the name nor the client is locked out;
    None for a wrong password (counted; a lock-out is audited). Raises ``LockedOut``."""
    from .admin import authenticate

    throttle.check(name, client)
    with store.reading() as session:
        user = authenticate(session, name, password)
    if user is not None:
        throttle.succeeded(name)
        return user
    if throttle.failed(name, client):
        with store.writing() as session:
            append(session, [Change(actor=name[:64] or "(no name)", action="lockout", entity="login",
                                    entity_id=name[:64] or "(no name)",
                                    after={"client": client, "minutes": LOCKOUT_S // 60,
                                           "after_failures": f"{MAX_PER_NAME} for a name or {MAX_PER_CLIENT} "
                                                             f"for a client in {WINDOW_S // 60} minutes"})])
    return None
