"""Officer accounts, console sessions and login throttling, kept in the database.

Where: in the audit store's database (tables `console_users`, `console_sessions`,
`console_login_failures`; Alembic migration 0002 in gate/migrations), not in a
console database of its own, because
- a fleet of gates already shares one PostgreSQL audit store, so one account table
  serves every gate: a supervisor who disables an officer at one gate disables them
  at all gates, and a lockout earned at one gate holds at the others;
- an account change commits in the same database transaction as its audit record
  (`AuditStore.append(event, change)`), so no account change goes unaudited and no
  audit record describes a change that did not happen.

Passwords are argon2id hashes (argon2-cffi). The session cookie holds a random
256-bit token; the database holds only its SHA-256, so whoever reads the database
cannot ride a session. A new token is issued at login (no fixation); sessions
expire after an idle and an absolute time, and a user's sessions end when their
password changes or their account is disabled. A role change applies at the next
request: the role is read from the account, not from the session. The CSRF token
is an HMAC of the session token, which every state-changing request must echo in
`X-CSRF-Token`; visitors who have not signed in get a token with no row, so
strangers cannot fill the table. Failed logins lock the account and the client
address, for a time that doubles with each further failure.
"""
from __future__ import annotations

import base64
import getpass
import hashlib
import hmac
import re
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy.orm import Mapped, Session as DbSession, mapped_column

from gate.audit import AuditEvent, AuditKeys, AuditStore, Base, ChangeRefused

ROLES: tuple[str, ...] = ("officer", "supervisor", "auditor")
MIN_PASSWORD = 12
FAILURES_FORGOTTEN_S = 24 * 3600      # failure counts untouched this long (and not locked) are dropped
_TOKEN = re.compile(r"[A-Za-z0-9_-]{43}")


# --- storage model ---------------------------------------------------------------------------------

class Account(Base):
    __tablename__ = "console_users"
    username: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    role: Mapped[str] = mapped_column(sa.String(16))
    password_hash: Mapped[str] = mapped_column(sa.String(256))
    disabled: Mapped[bool] = mapped_column(sa.Boolean)
    created_at: Mapped[float] = mapped_column(sa.Float)
    password_changed_at: Mapped[float] = mapped_column(sa.Float)


class SessionRow(Base):
    __tablename__ = "console_sessions"
    token_hash: Mapped[str] = mapped_column(sa.String(64), primary_key=True)   # SHA-256 of the cookie's token
    username: Mapped[str] = mapped_column(
        sa.String(64), sa.ForeignKey("console_users.username", ondelete="CASCADE"), index=True)
    created_at: Mapped[float] = mapped_column(sa.Float)
    last_seen: Mapped[float] = mapped_column(sa.Float, index=True)


class LoginFailure(Base):
    __tablename__ = "console_login_failures"
    key: Mapped[str] = mapped_column(sa.String(96), primary_key=True)          # 'user:NAME' or 'addr:IP'
    count: Mapped[int] = mapped_column(sa.Integer)
    locked_until: Mapped[float] = mapped_column(sa.Float)
    last_failure: Mapped[float] = mapped_column(sa.Float, index=True)


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class UserError(ChangeRefused):
    pass


@dataclass(frozen=True)
class User:
    username: str
    role: str
    disabled: bool = False


# --- accounts --------------------------------------------------------------------------------------

class UserStore:
    """Console accounts in the audit store's database; every change is audited
    (event type `account`, the acting user as actor) in the change's own transaction."""

    def __init__(self, audit: AuditStore, hasher: PasswordHasher | None = None, *, gate_id: str = "console"):
        self.audit = audit
        self.engine = audit.engine
        self.gate_id = gate_id
        self.hasher = hasher or PasswordHasher()
        self._dummy = self.hasher.hash(secrets.token_hex(16))   # equal work for unknown users

    @classmethod
    def in_dir(cls, data_dir: Path, hasher: PasswordHasher | None = None) -> "UserStore":
        """The accounts of a gate with the default (SQLite) audit store in `data_dir`."""
        data_dir.mkdir(parents=True, exist_ok=True)
        return cls(AuditStore(f"sqlite:///{data_dir / 'audit.db'}", AuditKeys.load_or_create(data_dir / "audit.key")),
                   hasher)

    @classmethod
    def from_settings(cls, settings, hasher: PasswordHasher | None = None) -> "UserStore":
        """The accounts in the configured audit store (the fleet's PostgreSQL, or SQLite)."""
        return cls(AuditStore.from_settings(settings), hasher, gate_id=settings.gate_id)

    def _change(self, actor: str, action: str, username: str, change: Callable[[DbSession], dict | None],
                **details: str) -> None:
        """Run `change` and append its audit record in one transaction; what `change`
        returns (e.g. the role before) is added to the record."""
        ev = AuditEvent(event_type="account", gate_id=self.gate_id, actor=actor, outcome=action,
                        checks={"username": username, **details})

        def run(s: DbSession) -> None:
            ev.checks.update(change(s) or {})
        self.audit.append(ev, run)

    @staticmethod
    def _account(s: DbSession, username: str) -> Account:
        a = s.execute(sa.select(Account).where(Account.username == username).with_for_update()).scalar_one_or_none()
        if a is None:
            raise UserError("no such user")
        return a

    @staticmethod
    def _check_password(username: str, password: str) -> None:
        """Length over composition rules, and no password built on the user name
        (NIST SP 800-63B 5.1.1.2: context-specific words)."""
        if len(password) < MIN_PASSWORD:
            raise UserError(f"password must have at least {MIN_PASSWORD} characters")
        if username.lower() in password.lower():
            raise UserError("password must not contain the user name")

    def add(self, username: str, password: str, role: str, *, actor: str = "system") -> User:
        if role not in ROLES:
            raise UserError(f"role must be one of {', '.join(ROLES)}")
        if not re.fullmatch(r"[A-Za-z0-9._-]{1,64}", username):
            raise UserError("username: 1-64 letters, digits, '.', '_' or '-'")
        self._check_password(username, password)
        hashed, now = self.hasher.hash(password), time.time()

        def change(s: DbSession) -> None:
            if s.get(Account, username) is not None:
                raise UserError("user exists")
            s.add(Account(username=username, role=role, password_hash=hashed, disabled=False,
                          created_at=now, password_changed_at=now))
        self._change(actor, "created", username, change, role=role)
        return User(username, role)

    def set_password(self, username: str, password: str, *, actor: str = "system") -> None:
        """A new password ends every session of the user, at every gate."""
        self._check_password(username, password)
        hashed = self.hasher.hash(password)

        def change(s: DbSession) -> None:
            a = self._account(s, username)
            a.password_hash, a.password_changed_at = hashed, time.time()
            s.execute(sa.delete(SessionRow).where(SessionRow.username == username))
        self._change(actor, "password_set", username, change)

    def set_disabled(self, username: str, disabled: bool, *, actor: str = "system") -> None:
        """Disabling ends every session of the user, at every gate."""
        def change(s: DbSession) -> None:
            self._account(s, username).disabled = disabled
            if disabled:
                s.execute(sa.delete(SessionRow).where(SessionRow.username == username))
        self._change(actor, "disabled" if disabled else "enabled", username, change)

    def set_role(self, username: str, role: str, *, actor: str = "system") -> None:
        if role not in ROLES:
            raise UserError(f"role must be one of {', '.join(ROLES)}")
        def change(s: DbSession) -> dict:
            a = self._account(s, username)
            before, a.role = a.role, role
            return {"old_role": before}
        self._change(actor, "role_changed", username, change, role=role)

    def get(self, username: str) -> User | None:
        with DbSession(self.engine) as s:
            a = s.get(Account, username)
            return None if a is None else User(a.username, a.role, a.disabled)

    def list(self) -> list[User]:
        with DbSession(self.engine) as s:
            return [User(a.username, a.role, a.disabled)
                    for a in s.execute(sa.select(Account).order_by(Account.username)).scalars()]

    def has_role(self, role: str) -> bool:
        return any(u.role == role and not u.disabled for u in self.list())

    def verify(self, username: str, password: str) -> User | None:
        with DbSession(self.engine) as s:
            a = s.get(Account, username)
            row = None if a is None else (a.password_hash, a.role, a.disabled)
        try:
            if row is None:
                self.hasher.verify(self._dummy, password + "x")
                return None
            self.hasher.verify(row[0], password)
        except (VerificationError, InvalidHashError):
            return None
        if row[2]:
            return None
        if self.hasher.check_needs_rehash(row[0]):   # same password, stronger parameters: sessions stay
            with self.engine.execution_options(egate_write=True).begin() as c:
                c.execute(sa.update(Account).where(Account.username == username)
                          .values(password_hash=self.hasher.hash(password)))
        return User(username, row[1])


# --- sessions and lockout --------------------------------------------------------------------------

@dataclass
class Session:
    id: str                 # the token in the cookie; the database has only its hash
    csrf: str
    created: float
    last_seen: float
    user: User | None = None


def _csrf(token: str) -> str:
    mac = hmac.new(token.encode(), b"egate console csrf", hashlib.sha256).digest()
    return base64.urlsafe_b64encode(mac).rstrip(b"=").decode()


class Sessions:
    """Server-side sessions and login throttling in the accounts' database, so both
    survive a restart and hold at every gate of a fleet. Times are wall-clock seconds."""

    def __init__(self, users: UserStore, *, idle_s: float, absolute_s: float, max_failures: int,
                 lockout_base_s: float, clock: Callable[[], float] = time.time, touch_s: float = 5.0):
        self.users, self.engine = users, users.engine
        self._write = users.engine.execution_options(egate_write=True)
        self.idle_s, self.absolute_s = idle_s, absolute_s
        self.max_failures, self.lockout_base_s = max_failures, lockout_base_s
        self.clock = clock
        self.touch_s = touch_s      # last_seen is written at most this often (idle expiry errs early)

    def new(self) -> Session:
        """A visitor who has not signed in: a fresh token and its CSRF token, no row."""
        now = self.clock()
        token = secrets.token_urlsafe(32)
        return Session(token, _csrf(token), now, now)

    def get(self, token: str | None) -> Session | None:
        """The session of a cookie: signed in (a live row), anonymous (no row), or None
        (malformed, or a signed-in session that has just expired or whose account is disabled)."""
        if not token or not _TOKEN.fullmatch(token):
            return None
        now, h = self.clock(), token_hash(token)
        with DbSession(self.engine) as s:
            row = s.execute(sa.select(SessionRow, Account).join(Account, Account.username == SessionRow.username)
                            .where(SessionRow.token_hash == h)).first()
            found = None if row is None else (row[0].created_at, row[0].last_seen, row[1].username,
                                              row[1].role, row[1].disabled)
        if found is None:
            return Session(token, _csrf(token), now, now)
        created, last_seen, username, role, disabled = found
        if disabled or now - last_seen > self.idle_s or now - created > self.absolute_s:
            self.drop(token)
            return None
        if now - last_seen >= self.touch_s:
            with self._write.begin() as c:
                c.execute(sa.update(SessionRow).where(SessionRow.token_hash == h).values(last_seen=now))
            last_seen = now
        return Session(token, _csrf(token), created, last_seen, User(username, role))

    def drop(self, token: str) -> None:
        with self._write.begin() as c:
            c.execute(sa.delete(SessionRow).where(SessionRow.token_hash == token_hash(token)))

    def login(self, old: Session | None, user: User) -> Session:
        """A new token for the authenticated session (rotation); the old one, if it was
        signed in, ends. Sessions past their expiry are swept here."""
        now = self.clock()
        s = self.new()
        s.user = user
        with self._write.begin() as c:
            if old is not None:
                c.execute(sa.delete(SessionRow).where(SessionRow.token_hash == token_hash(old.id)))
            c.execute(sa.delete(SessionRow).where(sa.or_(SessionRow.last_seen < now - self.idle_s,
                                                         SessionRow.created_at < now - self.absolute_s)))
            c.execute(sa.insert(SessionRow).values(token_hash=token_hash(s.id), username=user.username,
                                                   created_at=now, last_seen=now))
        return s

    @staticmethod
    def csrf_ok(session: Session | None, token: str | None) -> bool:
        return bool(session and token and hmac.compare_digest(session.csrf, token))

    # -- lockout --
    def locked_for(self, *keys: str) -> float:
        now = self.clock()
        with self.engine.connect() as c:
            until = c.execute(sa.select(sa.func.max(LoginFailure.locked_until))
                              .where(LoginFailure.key.in_(keys))).scalar()
        return max(0.0, (until or 0.0) - now)

    def failed(self, *keys: str) -> None:
        """Count a failure against each key; at `max_failures` and beyond, lock it for
        `lockout_base_s` doubled per further failure. Atomic across gates."""
        now = self.clock()
        with self._write.begin() as c:
            c.execute(sa.delete(LoginFailure).where(LoginFailure.last_failure < now - FAILURES_FORGOTTEN_S,
                                                    LoginFailure.locked_until < now))
            for k in keys:
                count = self._increment(c, k, now)
                if count >= self.max_failures:
                    c.execute(sa.update(LoginFailure).where(LoginFailure.key == k).values(
                        locked_until=now + self.lockout_base_s * 2 ** min(count - self.max_failures, 20)))

    def _increment(self, c: sa.Connection, key: str, now: float) -> int:
        if self.engine.dialect.name == "postgresql":
            from sqlalchemy.dialects.postgresql import insert
        else:
            from sqlalchemy.dialects.sqlite import insert
        q = insert(LoginFailure).values(key=key, count=1, locked_until=0.0, last_failure=now)
        q = q.on_conflict_do_update(index_elements=[LoginFailure.key],
                                    set_={"count": LoginFailure.count + 1, "last_failure": now})
        c.execute(q)
        return c.execute(sa.select(LoginFailure.count).where(LoginFailure.key == key)).scalar_one()

    def succeeded(self, *keys: str) -> None:
        with self._write.begin() as c:
            c.execute(sa.delete(LoginFailure).where(LoginFailure.key.in_(keys)))


# --- command line: `python -m gate users ...` ----------------------------------------------------

def register(subparsers) -> None:
    p = subparsers.add_parser("users", help="manage officer console accounts (audited as cli:<login name>)")
    us = p.add_subparsers(dest="users_command", required=True)
    add = us.add_parser("add", help="add an account (asks for the password)")
    add.add_argument("username")
    add.add_argument("--role", choices=ROLES, required=True)
    add.set_defaults(func=_cmd_add)
    ls = us.add_parser("list", help="list accounts")
    ls.set_defaults(func=_cmd_list)
    pw = us.add_parser("passwd", help="set an account's password (ends its sessions)")
    pw.add_argument("username")
    pw.set_defaults(func=_cmd_passwd)
    dis = us.add_parser("disable", help="disable an account (ends its sessions)")
    dis.add_argument("username")
    dis.set_defaults(func=_cmd_disable)
    role = us.add_parser("role", help="change an account's role")
    role.add_argument("username")
    role.add_argument("role", choices=ROLES)
    role.set_defaults(func=_cmd_role)


def _store() -> UserStore:
    from gate.config import Settings
    return UserStore.from_settings(Settings())


def _actor() -> str:
    return f"cli:{getpass.getuser()}"[:64]


def _ask_password() -> str:
    import sys
    if not sys.stdin.isatty():
        return sys.stdin.readline().rstrip("\n")
    first = getpass.getpass("Password: ")
    if getpass.getpass("Again: ") != first:
        raise UserError("passwords differ")
    return first


def _run(action: Callable[[UserStore], None], done: str | None = None) -> int:
    from gate.audit import AuditUnavailable
    store = _store()
    try:
        action(store)
    except (UserError, AuditUnavailable) as e:
        print(f"error: {e}")
        return 1
    finally:
        store.audit.close()
    if done:
        print(done)
    return 0


def _cmd_add(args) -> int:
    return _run(lambda s: s.add(args.username, _ask_password(), args.role, actor=_actor()),
                f"added {args.username} ({args.role})")


def _cmd_list(args) -> int:
    def show(s: UserStore) -> None:
        for u in s.list():
            print(f"{u.username}\t{u.role}\t{'disabled' if u.disabled else 'active'}")
    return _run(show)


def _cmd_passwd(args) -> int:
    return _run(lambda s: s.set_password(args.username, _ask_password(), actor=_actor()))


def _cmd_disable(args) -> int:
    return _run(lambda s: s.set_disabled(args.username, True, actor=_actor()))


def _cmd_role(args) -> int:
    return _run(lambda s: s.set_role(args.username, args.role, actor=_actor()),
                f"{args.username} is now {args.role}")
