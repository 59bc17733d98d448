"""Officer accounts and console sessions.

Passwords are argon2id hashes (argon2-cffi). Sessions are server-side: the cookie
holds only a random id, which is replaced at login (no fixation); each session
has an idle and an absolute expiry and a synchroniser CSRF token that every
state-changing request must echo in the `X-CSRF-Token` header. Repeated failed
logins lock the account and the client address, with a lockout that doubles at
each further failure.
"""
from __future__ import annotations

import hmac
import re
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import sqlalchemy as sa
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

Role = Literal["officer", "supervisor", "auditor"]
ROLES: tuple[str, ...] = ("officer", "supervisor", "auditor")
MIN_PASSWORD = 12

_meta = sa.MetaData()
users_table = sa.Table(
    "console_users", _meta,
    sa.Column("username", sa.String(64), primary_key=True),
    sa.Column("role", sa.String(16), nullable=False),
    sa.Column("password_hash", sa.String(256), nullable=False),
    sa.Column("disabled", sa.Boolean, nullable=False, default=False),
    sa.Column("created_at", sa.Float, nullable=False),
)


class UserError(ValueError):
    pass


@dataclass(frozen=True)
class User:
    username: str
    role: str
    disabled: bool = False


class UserStore:
    """Console accounts in a small SQLite (or any SQLAlchemy) database."""

    def __init__(self, database_url: str, hasher: PasswordHasher | None = None):
        self.engine = sa.create_engine(database_url)
        _meta.create_all(self.engine)
        self.hasher = hasher or PasswordHasher()
        self._dummy = self.hasher.hash(secrets.token_hex(16))   # equal work for unknown users

    @classmethod
    def in_dir(cls, data_dir: Path, hasher: PasswordHasher | None = None) -> "UserStore":
        data_dir.mkdir(parents=True, exist_ok=True)
        return cls(f"sqlite:///{data_dir / 'console_users.db'}", hasher)

    def add(self, username: str, password: str, role: str) -> User:
        if role not in ROLES:
            raise UserError(f"role must be one of {', '.join(ROLES)}")
        if not re.fullmatch(r"[A-Za-z0-9._-]{1,64}", username):
            raise UserError("username: 1-64 letters, digits, '.', '_' or '-'")
        if len(password) < MIN_PASSWORD:
            raise UserError(f"password must have at least {MIN_PASSWORD} characters")
        with self.engine.begin() as c:
            if c.execute(sa.select(users_table.c.username).where(users_table.c.username == username)).first():
                raise UserError("user exists")
            c.execute(users_table.insert().values(username=username, role=role, disabled=False,
                                                  password_hash=self.hasher.hash(password),
                                                  created_at=time.time()))
        return User(username, role)

    def set_password(self, username: str, password: str) -> None:
        if len(password) < MIN_PASSWORD:
            raise UserError(f"password must have at least {MIN_PASSWORD} characters")
        with self.engine.begin() as c:
            n = c.execute(users_table.update().where(users_table.c.username == username)
                          .values(password_hash=self.hasher.hash(password))).rowcount
        if not n:
            raise UserError("no such user")

    def set_disabled(self, username: str, disabled: bool) -> None:
        with self.engine.begin() as c:
            n = c.execute(users_table.update().where(users_table.c.username == username)
                          .values(disabled=disabled)).rowcount
        if not n:
            raise UserError("no such user")

    def list(self) -> list[User]:
        with self.engine.connect() as c:
            rows = c.execute(sa.select(users_table).order_by(users_table.c.username)).all()
        return [User(r.username, r.role, bool(r.disabled)) for r in rows]

    def has_role(self, role: str) -> bool:
        return any(u.role == role and not u.disabled for u in self.list())

    def verify(self, username: str, password: str) -> User | None:
        with self.engine.connect() as c:
            r = c.execute(sa.select(users_table).where(users_table.c.username == username)).first()
        try:
            if r is None:
                self.hasher.verify(self._dummy, password + "x")
                return None
            self.hasher.verify(r.password_hash, password)
        except (VerificationError, InvalidHashError):
            return None
        if r.disabled:
            return None
        if self.hasher.check_needs_rehash(r.password_hash):
            self.set_password(username, password)
        return User(r.username, r.role)


@dataclass
class Session:
    id: str
    csrf: str
    created: float
    last_seen: float
    user: User | None = None


@dataclass
class _Failures:
    count: int = 0
    locked_until: float = 0.0


class Sessions:
    """Server-side sessions plus login throttling."""

    def __init__(self, *, idle_s: float, absolute_s: float, max_failures: int, lockout_base_s: float,
                 clock: Callable[[], float] = time.monotonic):
        self.idle_s, self.absolute_s = idle_s, absolute_s
        self.max_failures, self.lockout_base_s = max_failures, lockout_base_s
        self.clock = clock
        self._sessions: dict[str, Session] = {}
        self._failures: dict[str, _Failures] = {}
        self._lock = threading.Lock()

    def new(self) -> Session:
        now = self.clock()
        s = Session(secrets.token_urlsafe(32), secrets.token_urlsafe(32), now, now)
        with self._lock:
            self._sessions[s.id] = s
        return s

    def get(self, sid: str | None) -> Session | None:
        if not sid:
            return None
        now = self.clock()
        with self._lock:
            s = self._sessions.get(sid)
            if s is None:
                return None
            if now - s.last_seen > self.idle_s or now - s.created > self.absolute_s:
                del self._sessions[sid]
                return None
            s.last_seen = now
            return s

    def drop(self, sid: str) -> None:
        with self._lock:
            self._sessions.pop(sid, None)

    def login(self, old: Session | None, user: User) -> Session:
        """A fresh id and CSRF token for the authenticated session (rotation)."""
        if old is not None:
            self.drop(old.id)
        s = self.new()
        s.user = user
        return s

    def drop_user(self, username: str) -> None:
        with self._lock:
            for sid in [k for k, s in self._sessions.items() if s.user and s.user.username == username]:
                del self._sessions[sid]

    @staticmethod
    def csrf_ok(session: Session | None, token: str | None) -> bool:
        return bool(session and token and hmac.compare_digest(session.csrf, token))

    # -- lockout --
    def locked_for(self, *keys: str) -> float:
        now = self.clock()
        with self._lock:
            return max((f.locked_until - now for k in keys if (f := self._failures.get(k))), default=0.0)

    def failed(self, *keys: str) -> None:
        now = self.clock()
        with self._lock:
            for k in keys:
                f = self._failures.setdefault(k, _Failures())
                f.count += 1
                if f.count >= self.max_failures:
                    f.locked_until = now + self.lockout_base_s * 2 ** (f.count - self.max_failures)

    def succeeded(self, *keys: str) -> None:
        with self._lock:
            for k in keys:
                self._failures.pop(k, None)


# --- command line: `python -m gate users ...` ----------------------------------------------------

def register(subparsers) -> None:
    p = subparsers.add_parser("users", help="manage officer console accounts")
    us = p.add_subparsers(dest="users_command", required=True)
    add = us.add_parser("add", help="add an account (asks for the password)")
    add.add_argument("username")
    add.add_argument("--role", choices=ROLES, required=True)
    add.set_defaults(func=_cmd_add)
    ls = us.add_parser("list", help="list accounts")
    ls.set_defaults(func=_cmd_list)
    pw = us.add_parser("passwd", help="set an account's password")
    pw.add_argument("username")
    pw.set_defaults(func=_cmd_passwd)
    dis = us.add_parser("disable", help="disable an account")
    dis.add_argument("username")
    dis.set_defaults(func=_cmd_disable)


def _store() -> UserStore:
    from gate.config import Settings
    return UserStore.in_dir(Settings().data_dir)


def _ask_password() -> str:
    import getpass
    import sys
    if not sys.stdin.isatty():
        return sys.stdin.readline().rstrip("\n")
    first = getpass.getpass("Password: ")
    if getpass.getpass("Again: ") != first:
        raise UserError("passwords differ")
    return first


def _cmd_add(args) -> int:
    try:
        _store().add(args.username, _ask_password(), args.role)
    except UserError as e:
        print(f"error: {e}")
        return 1
    print(f"added {args.username} ({args.role})")
    return 0


def _cmd_list(args) -> int:
    for u in _store().list():
        print(f"{u.username}\t{u.role}\t{'disabled' if u.disabled else 'active'}")
    return 0


def _cmd_passwd(args) -> int:
    try:
        _store().set_password(args.username, _ask_password())
    except UserError as e:
        print(f"error: {e}")
        return 1
    return 0


def _cmd_disable(args) -> int:
    try:
        _store().set_disabled(args.username, True)
    except UserError as e:
        print(f"error: {e}")
        return 1
    return 0
