"""The double-entry ledger: the one place money moves.

Every movement is a row in ``movements`` with balanced rows in ``entries`` (signed,
credit > 0, summing to zero). Account rows keep the posted balance and the pending
debits/credits in the same transaction, so they can be recomputed from the entries.

Concurrency: every account a movement touches is locked with one
``SELECT … ORDER BY id FOR UPDATE`` (a fixed order: no deadlocks) before any rule is
checked, so the checks and the writes see the same numbers. On SQLite the write
transaction itself is the lock (BEGIN IMMEDIATE). Hot system accounts (the top-up float,
a popular merchant) are split into shard rows picked at random, so concurrent
movements touching the same system account do not queue on one row lock.

``Ledger.move`` checks every rule before it writes anything, so a WalletError leaves
nothing behind. It is the hottest code path of the product, so on the two drivers the
product runs on it skips SQLAlchemy's statement layer and runs fixed SQL on the DBAPI
connection of the caller's ``Connection`` (same connection, same transaction, same
savepoints): on PostgreSQL (asyncpg) a movement is one locking SELECT and one statement
that inserts the movement and its entries and writes the accounts back; on SQLite
(sqlite3) the same statements run one by one. Any other driver takes the SQLAlchemy Core
path, which does the same thing.
"""

from __future__ import annotations

import random
import secrets
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cache
from typing import Any

from sqlalchemy import Connection, Row, bindparam, func, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Dialect
from sqlalchemy.exc import DBAPIError

from storage.schema import accounts, audit_log, customers, entries, movements
from wallet.clock import Clock, as_utc, month_key
from wallet.config import Settings
from wallet.errors import (
    AccountNotActive,
    BalanceCapExceeded,
    CustomerNotFound,
    IdempotencyConflict,
    InsufficientFunds,
    InvalidAmount,
    InvalidTransition,
    MonthlyLimitExceeded,
    MovementNotFound,
    TierNotAllowed,
    ValidationFailed,
    WalletError,
)
from wallet.model import (
    CAN_RECEIVE,
    FEE_INCOME,
    PREMIUM_ONLY,
    CustomerParty,
    Kind,
    Movement,
    MoveMoney,
    Party,
    State,
    Status,
    SystemParty,
    Tier,
)

_REF_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"
# byte -> one of the 32 letters (256 is a multiple of 32: every letter equally likely)
_REF_TABLE = bytes(ord(_REF_ALPHABET[b % len(_REF_ALPHABET)]) for b in range(256))


def new_ref() -> str:
    """A customer-facing reference such as ``KP7H2MX9QJ4T``."""
    return "KP" + secrets.token_bytes(10).translate(_REF_TABLE).decode("ascii")


def wallet_code(customer_id: int) -> str:
    return f"wallet:{customer_id}"


@dataclass(slots=True)
class _Acct:
    """A locked account row, changed in memory and written back once."""

    id: int
    customer_id: int | None
    balance: int
    debits_pending: int
    credits_pending: int
    usage_month: int
    usage_amount: int
    tier: str | None
    status: str | None
    dirty: bool = False

    def used_in(self, month: int) -> int:
        return self.usage_amount if self.usage_month == month else 0

    def add_usage(self, month: int, amount: int) -> None:
        self.usage_amount = self.used_in(month) + amount
        self.usage_month = month


_LOCK_COLUMNS = (
    accounts.c.id,
    accounts.c.customer_id,
    accounts.c.balance,
    accounts.c.debits_pending,
    accounts.c.credits_pending,
    accounts.c.usage_month,
    accounts.c.usage_amount,
    customers.c.tier,
    customers.c.status,
)
_FROM = accounts.outerjoin(customers, customers.c.id == accounts.c.customer_id)

_WRITE_BACK = (
    update(accounts)
    .where(accounts.c.id == bindparam("a_id"))
    .values(
        balance=bindparam("a_balance"),
        debits_pending=bindparam("a_dp"),
        credits_pending=bindparam("a_cp"),
        usage_month=bindparam("a_um"),
        usage_amount=bindparam("a_ua"),
    )
)

_INSERT_ENTRY = entries.insert()

# Every account a movement touches, locked in one statement in a fixed (id) order.
_LOCK_PARTIES = (
    select(*_LOCK_COLUMNS)
    .select_from(_FROM)
    .where(
        or_(
            accounts.c.customer_id.in_(bindparam("cids", expanding=True)),
            accounts.c.id.in_(bindparam("ids", expanding=True)),
        )
    )
    .order_by(accounts.c.id)
    .with_for_update(of=accounts)
)

_INSERT_MOVEMENT = {
    name: dialect.insert(movements)
    .on_conflict_do_nothing(index_elements=["idempotency_key"])
    .returning(movements.c.id)
    for name, dialect in (("postgresql", postgresql), ("sqlite", sqlite))
}


def _insert_movement_stmt(dialect: str) -> Any:
    """INSERT … ON CONFLICT (idempotency_key) DO NOTHING RETURNING id."""
    return _INSERT_MOVEMENT[dialect]


# ---------------------------------------------------------------------- the money path
# The columns of a new movement, in the order of the INSERTs below.
_MOVEMENT_COLUMNS = (
    "ref",
    "idempotency_key",
    "request_hash",
    "kind",
    "state",
    "amount",
    "fee",
    "debit_customer_id",
    "credit_customer_id",
    "usage_month",
    "expires_at",
    "created_at",
    "settled_at",
    "actor",
    "settled_by",
    "description",
    "meta",
)
# The fixed statements of the money path, one text per shape (how many customers and
# system rows a movement touches, how many legs it has): every parameter is a scalar
# (asyncpg encodes those far more cheaply than arrays) and PostgreSQL settles on one
# generic plan per prepared statement instead of planning each execution.
_LOCK_SELECT = (
    "SELECT a.id, a.customer_id, a.balance, a.debits_pending, a.credits_pending, "
    "a.usage_month, a.usage_amount, c.tier, c.status "
    "FROM accounts AS a LEFT OUTER JOIN customers AS c ON c.id = a.customer_id"
)


def _placeholders(dialect: str, start: int, n: int, cast: str = "") -> list[str]:
    if dialect == "sqlite":
        return ["?"] * n
    return [f"${i}{cast}" for i in range(start, start + n)]


@cache
def _lock_sql(dialect: str, customers_n: int, ids_n: int) -> str:
    """Every account of a movement, locked in id order (on SQLite the write transaction
    is the lock): wallets by customer id, system shard rows by account id."""
    cids = _placeholders(dialect, 1, customers_n, "::bigint")
    ids = _placeholders(dialect, 1 + customers_n, ids_n, "::bigint")
    where = " OR ".join(
        f"{column} IN ({', '.join(marks)})"
        for column, marks in (("a.customer_id", cids), ("a.id", ids))
        if marks
    )
    lock = " FOR UPDATE OF a" if dialect == "postgresql" else ""
    # only placeholders are formatted in
    return f"{_LOCK_SELECT} WHERE {where or '0 = 1'} ORDER BY a.id{lock}"


_PG_INSERT_MOVEMENT = """\
INSERT INTO movements (ref, idempotency_key, request_hash, kind, state, amount, fee,
    debit_customer_id, credit_customer_id, usage_month, expires_at, created_at,
    settled_at, actor, settled_by, description, meta)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17)
ON CONFLICT (idempotency_key) DO NOTHING
RETURNING id"""


@cache
def _pg_write_sql(legs_n: int, accounts_n: int) -> str:
    """The movement, its entries and the accounts' new numbers in one statement. The
    entries and the account updates join the inserted row: when the key was used before
    (ON CONFLICT DO NOTHING inserts nothing) it writes nothing and returns no row."""
    n = 18
    legs = []
    for _ in range(legs_n):
        legs.append(f"(${n}::bigint, ${n + 1}::bigint)")
        n += 2
    accts = []
    for _ in range(accounts_n):
        marks = [f"${k}::bigint" for k in range(n, n + 6)]
        marks[4] = f"${n + 4}::integer"  # usage_month
        accts.append(f"({', '.join(marks)})")
        n += 6
    return (  # only placeholders are formatted in
        f"WITH m AS ({_PG_INSERT_MOVEMENT}), "  # noqa: S608
        "e AS (INSERT INTO entries (movement_id, account_id, amount) "
        "SELECT m.id, leg.account_id, leg.amount "
        f"FROM m, (VALUES {', '.join(legs)}) AS leg (account_id, amount)), "
        "u AS (UPDATE accounts AS a SET balance = v.balance, debits_pending = v.dp, "
        "credits_pending = v.cp, usage_month = v.um, usage_amount = v.ua "
        f"FROM m, (VALUES {', '.join(accts)}) AS v (id, balance, dp, cp, um, ua) "
        "WHERE a.id = v.id) "
        "SELECT id FROM m"
    )


_SQLITE_INSERT_MOVEMENT = """\
INSERT INTO movements (ref, idempotency_key, request_hash, kind, state, amount, fee,
    debit_customer_id, credit_customer_id, usage_month, expires_at, created_at,
    settled_at, actor, settled_by, description, meta)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (idempotency_key) DO NOTHING
RETURNING id"""
_SQLITE_INSERT_ENTRY = "INSERT INTO entries (movement_id, account_id, amount) VALUES (?, ?, ?)"
_SQLITE_WRITE_BACK = (
    "UPDATE accounts SET balance = ?, debits_pending = ?, credits_pending = ?, "
    "usage_month = ?, usage_amount = ? WHERE id = ?"
)

_Legs = Sequence[tuple[_Acct, int]]


class _Store:
    """How the money path reaches the database: SQLAlchemy Core, for any driver."""

    def __init__(self, dialect: Dialect) -> None:
        self.dialect = dialect
        # SQLAlchemy's conversions of the movement's values (JSON as text, SQLite times)
        self.convert = [
            (i, convert)
            for i, name in enumerate(_MOVEMENT_COLUMNS)
            if (convert := movements.c[name].type.dialect_impl(dialect).bind_processor(dialect))
        ]

    def lock(self, conn: Connection, customer_ids: list[int], ids: list[int]) -> list[_Acct]:
        rows = conn.execute(_LOCK_PARTIES, {"cids": customer_ids, "ids": ids})
        return [_Acct(*r) for r in rows]

    def write(
        self, conn: Connection, values: Mapping[str, Any], legs: _Legs, accts: Sequence[_Acct]
    ) -> int | None:
        """Insert the movement, its entries and the accounts' new numbers; the new id, or
        None (nothing written) when ``values["idempotency_key"]`` was used before."""
        row = conn.execute(_insert_movement_stmt(self.dialect.name), values).first()
        if row is None:
            return None
        movement_id = int(row[0])
        conn.execute(
            _INSERT_ENTRY,
            [{"movement_id": movement_id, "account_id": a.id, "amount": amt} for a, amt in legs],
        )
        conn.execute(_WRITE_BACK, _write_back_params(accts))
        return movement_id

    def _movement_params(self, values: Mapping[str, Any]) -> list[Any]:
        """The movement's values in column order, converted as SQLAlchemy would."""
        params = [values[c] for c in _MOVEMENT_COLUMNS]
        for i, convert in self.convert:
            params[i] = convert(params[i])
        return params

    def _error(self, sql: str, params: Any, exc: Exception) -> BaseException:
        """A driver error wrapped as SQLAlchemy would (callers retry on those)."""
        return DBAPIError.instance(
            sql, params, exc, self.dialect.loaded_dbapi.Error, dialect=self.dialect
        )


class _AsyncpgStore(_Store):
    """PostgreSQL through SQLAlchemy's asyncpg DBAPI adapter: two round trips a movement.

    Its cursor starts the transaction (SQLAlchemy's asyncpg adapter begins lazily, at
    the first statement) and keeps prepared statements per connection."""

    def _run(self, conn: Connection, sql: str, params: Sequence[Any]) -> list[Any]:
        dbapi = self.dialect.loaded_dbapi
        cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
        try:
            cursor.execute(sql, params)
            return list(cursor.fetchall())
        except dbapi.Error as exc:
            raise self._error(sql, params, exc) from exc
        finally:
            cursor.close()

    def lock(self, conn: Connection, customer_ids: list[int], ids: list[int]) -> list[_Acct]:
        sql = _lock_sql("postgresql", len(customer_ids), len(ids))
        return [_Acct(*r) for r in self._run(conn, sql, (*customer_ids, *ids))]

    def write(
        self, conn: Connection, values: Mapping[str, Any], legs: _Legs, accts: Sequence[_Acct]
    ) -> int | None:
        params = self._movement_params(values)
        for acct, amount in legs:
            params += (acct.id, amount)
        for a in accts:
            params += (a.id, a.balance, a.debits_pending, a.credits_pending)
            params += (a.usage_month, a.usage_amount)
        rows = self._run(conn, _pg_write_sql(len(legs), len(accts)), params)
        return int(rows[0][0]) if rows else None


class _SqliteStore(_Store):
    """SQLite through the stdlib driver: fixed SQL on the connection's sqlite3 handle."""

    def lock(self, conn: Connection, customer_ids: list[int], ids: list[int]) -> list[_Acct]:
        sql = _lock_sql("sqlite", len(customer_ids), len(ids))
        params = (*customer_ids, *ids)
        try:
            rows = conn.connection.driver_connection.execute(sql, params).fetchall()  # type: ignore[union-attr]
        except self.dialect.loaded_dbapi.Error as exc:
            raise self._error(sql, params, exc) from exc
        return [_Acct(*r) for r in rows]

    def write(
        self, conn: Connection, values: Mapping[str, Any], legs: _Legs, accts: Sequence[_Acct]
    ) -> int | None:
        db: Any = conn.connection.driver_connection
        sql = _SQLITE_INSERT_MOVEMENT
        params: Any = self._movement_params(values)
        try:
            rows = db.execute(sql, params).fetchall()
            if not rows:
                return None
            movement_id = int(rows[0][0])
            sql, params = _SQLITE_INSERT_ENTRY, [(movement_id, a.id, amt) for a, amt in legs]
            db.executemany(sql, params)
            sql = _SQLITE_WRITE_BACK
            params = [
                (
                    a.balance,
                    a.debits_pending,
                    a.credits_pending,
                    a.usage_month,
                    a.usage_amount,
                    a.id,
                )
                for a in accts
            ]
            db.executemany(sql, params)
        except self.dialect.loaded_dbapi.Error as exc:
            raise self._error(sql, params, exc) from exc
        return movement_id


def _store_for(dialect: Dialect) -> _Store:
    if dialect.name == "postgresql" and dialect.driver == "asyncpg":
        return _AsyncpgStore(dialect)
    if dialect.name == "sqlite" and dialect.driver == "pysqlite":
        return _SqliteStore(dialect)
    return _Store(dialect)


def _write_back_params(accts: Iterable[_Acct]) -> list[dict[str, int]]:
    return [
        {
            "a_id": a.id,
            "a_balance": a.balance,
            "a_dp": a.debits_pending,
            "a_cp": a.credits_pending,
            "a_um": a.usage_month,
            "a_ua": a.usage_amount,
        }
        for a in accts
    ]


class Limits:
    """Tier limits from config."""

    def __init__(self, settings: Settings) -> None:
        lim = settings.limits
        self.balance_cap = {
            Tier.REGULAR: lim.regular_balance_cap,
            Tier.PREMIUM: lim.premium_balance_cap,
        }
        self.monthly_cap = {
            Tier.REGULAR: lim.regular_monthly_cap,
            Tier.PREMIUM: lim.premium_monthly_cap,
        }
        self.max_amount = lim.max_transaction_amount


class SystemAccounts:
    """Ids of the shard rows of each system account.

    Rows are created on first use; ids are cached only once their creation committed
    (``remember``), so a rolled-back transaction never leaves a stale id behind.
    """

    def __init__(self, shards: int) -> None:
        self.shards = shards
        self._ids: dict[str, list[int]] = {}

    def cached(self, party: SystemParty) -> list[int] | None:
        return self._ids.get(party.group_code)

    def remember(self, party: SystemParty, ids: list[int]) -> None:
        self._ids[party.group_code] = ids

    def create(self, conn: Connection, party: SystemParty, now: datetime) -> list[int]:
        """Create the shard rows if missing; return their ids (inside ``conn``'s transaction)."""
        code = party.group_code
        rows = [
            {
                "code": f"{code}#{shard}",
                "group_code": code,
                "shard": shard,
                "kind": party.kind.value,
                "created_at": now,
            }
            for shard in range(self.shards)
        ]
        ins: Any = (
            postgresql.insert(accounts)
            if conn.dialect.name == "postgresql"
            else sqlite.insert(accounts)
        )
        conn.execute(ins.on_conflict_do_nothing(index_elements=["code"]), rows)
        result = conn.execute(
            select(accounts.c.id).where(accounts.c.group_code == code).order_by(accounts.c.shard)
        )
        return [r[0] for r in result]

    def pick(self, conn: Connection, party: SystemParty, now: datetime) -> int:
        ids = self.cached(party) or self.create(conn, party, now)
        return ids[random.randrange(len(ids))]  # noqa: S311 - load spreading, not security


class Ledger:
    """Ledger operations inside a caller's transaction (``conn`` is in a transaction)."""

    def __init__(self, settings: Settings, clock: Clock, system: SystemAccounts) -> None:
        self.settings = settings
        self.clock = clock
        self.limits = Limits(settings)
        self.system = system
        self._stores: dict[Dialect, _Store] = {}

    def _store(self, conn: Connection) -> _Store:
        dialect = conn.dialect
        store = self._stores.get(dialect)
        if store is None:
            store = self._stores[dialect] = _store_for(dialect)
        return store

    # ------------------------------------------------------------------ create
    def move(self, conn: Connection, cmd: MoveMoney) -> Movement:
        """Create a posted or pending movement, exactly once per ``cmd.key``.

        Every rule is checked on the locked rows before anything is written, so a
        WalletError leaves nothing behind. A repeat of an earlier request returns the
        stored movement (``replayed``) even if the rules would now refuse it; another
        request under a used key raises IdempotencyConflict."""
        amount, fee = cmd.amount, cmd.fee
        if not isinstance(amount, int) or isinstance(amount, bool):
            raise ValidationFailed("amount must be an integer number of rupiah")
        if amount <= 0 or amount > self.limits.max_amount:
            raise InvalidAmount(amount, self.limits.max_amount)
        if fee < 0:
            raise ValidationFailed("fee must not be negative")
        if cmd.source == cmd.destination:
            raise ValidationFailed("source and destination are the same account")
        if not cmd.key or len(cmd.key) > 200:
            raise ValidationFailed("an idempotency key of 1..200 characters is required")
        total = amount + fee
        now = self.clock.now()
        month = month_key(now)
        store = self._store(conn)

        src, dst, fee_acct = self._lock_parties(conn, store, cmd, now)
        request_hash = cmd.request_hash()
        try:
            self._check_source(src, cmd, total, month)
            self._check_destination(dst, amount, month)
        except WalletError:
            # Refused now; but a repeat of an earlier request returns what that one did.
            replayed = self._replay(conn, cmd.key, request_hash)
            if replayed is None:
                raise
            return replayed

        legs: list[tuple[_Acct, int]] = [(src, -total), (dst, amount)]
        if fee_acct is not None:
            legs.append((fee_acct, fee))
        changed: list[_Acct] = []
        for acct, amt in legs:
            if cmd.hold:
                if amt < 0:
                    acct.debits_pending -= amt
                else:
                    acct.credits_pending += amt
            else:
                acct.balance += amt
            if acct.customer_id is not None:
                acct.add_usage(month, abs(amt))
            if not acct.dirty:
                acct.dirty = True
                changed.append(acct)

        expires_at = None
        if cmd.hold:
            minutes = cmd.hold_minutes or self.settings.ledger.hold_expiry_minutes
            expires_at = now + timedelta(minutes=minutes)
        actor = cmd.actor[:120]
        state = State.PENDING if cmd.hold else State.POSTED
        values = {
            "ref": new_ref(),
            "idempotency_key": cmd.key,
            "request_hash": request_hash,
            "kind": cmd.kind.value,
            "state": state.value,
            "amount": amount,
            "fee": fee,
            "debit_customer_id": _customer_of(cmd.source),
            "credit_customer_id": _customer_of(cmd.destination),
            "usage_month": month,
            "expires_at": expires_at,
            "created_at": now,
            "settled_at": None if cmd.hold else now,
            "actor": actor,
            "settled_by": None if cmd.hold else actor,
            "description": cmd.description[:200],
            "meta": dict(cmd.meta) or None,
        }
        movement_id = store.write(conn, values, legs, changed)
        if movement_id is None:  # the key was used before (nothing was written)
            replayed = self._replay(conn, cmd.key, request_hash)
            if replayed is None:
                raise AssertionError(f"idempotency key {cmd.key!r} conflicted but is not found")
            return replayed
        return _movement_from(movement_id, values, cmd.kind, state)

    def _lock_parties(
        self, conn: Connection, store: _Store, cmd: MoveMoney, now: datetime
    ) -> tuple[_Acct, _Acct, _Acct | None]:
        """Lock the source, destination and fee accounts in one statement, in id order."""
        customer_ids: list[int] = []
        system_ids: list[int] = []
        for p in (cmd.source, cmd.destination):
            if isinstance(p, CustomerParty):
                customer_ids.append(p.customer_id)
            else:
                system_ids.append(self.system.pick(conn, p, now))
        fee_id = self.system.pick(conn, FEE_INCOME, now) if cmd.fee else None
        if fee_id is not None:
            system_ids.append(fee_id)
        locked = store.lock(conn, customer_ids, system_ids)
        by_customer = {a.customer_id: a for a in locked if a.customer_id is not None}
        by_id = {a.id: a for a in locked}
        picked = iter(system_ids)

        def one(party: Party) -> _Acct:
            if isinstance(party, CustomerParty):
                try:
                    return by_customer[party.customer_id]
                except KeyError:
                    raise CustomerNotFound(str(party.customer_id)) from None
            return by_id[next(picked)]

        src, dst = one(cmd.source), one(cmd.destination)
        return src, dst, by_id[fee_id] if fee_id is not None else None

    def _lock(self, conn: Connection, ids: Iterable[int]) -> dict[int, _Acct]:
        rows = conn.execute(_LOCK_PARTIES, {"cids": [], "ids": sorted(set(ids))})
        return {r[0]: _Acct(*r) for r in rows}

    def _replay(self, conn: Connection, key: str, request_hash: str) -> Movement | None:
        """The stored movement of an earlier request with ``key`` (None if there is none)."""
        row = conn.execute(select(movements).where(movements.c.idempotency_key == key)).first()
        if row is None:
            return None
        if row.request_hash != request_hash:
            raise IdempotencyConflict(key)
        return _movement(row, replayed=True)

    def _check_source(self, src: _Acct, cmd: MoveMoney, total: int, month: int) -> None:
        if src.customer_id is None:
            return  # system accounts may go below zero (money entering from outside)
        status, tier = Status(src.status or ""), Tier(src.tier or "")
        if status is not Status.ACTIVE:
            raise AccountNotActive(status.value)
        if tier is Tier.REGULAR and cmd.kind in PREMIUM_ONLY:
            raise TierNotAllowed(tier.value, cmd.kind.value)
        available = src.balance - src.debits_pending
        if available < total:
            raise InsufficientFunds(available, total)
        cap = self.limits.monthly_cap[tier]
        used = src.used_in(month)
        if used + total > cap:
            raise MonthlyLimitExceeded(cap, used, total)

    def _check_destination(self, dst: _Acct, amount: int, month: int) -> None:
        if dst.customer_id is None:
            return
        status, tier = Status(dst.status or ""), Tier(dst.tier or "")
        if status not in CAN_RECEIVE:
            raise AccountNotActive(status.value)
        cap = self.limits.balance_cap[tier]
        room = cap - dst.balance - dst.credits_pending
        if amount > room:
            raise BalanceCapExceeded(cap, max(room, 0), amount)
        monthly = self.limits.monthly_cap[tier]
        used = dst.used_in(month)
        if used + amount > monthly:
            raise MonthlyLimitExceeded(monthly, used, amount)

    def _write_back(self, conn: Connection, accts: Iterable[_Acct]) -> None:
        params = _write_back_params(a for a in accts if a.dirty)
        if params:
            conn.execute(_WRITE_BACK, params)

    # ------------------------------------------------------------------ settle
    def settle(self, conn: Connection, movement_id: int, *, post: bool, actor: str) -> Movement:
        """Post or void a pending movement, exactly once.

        Posting a movement that is already posted returns it (a retried callback);
        posting a voided one raises InvalidTransition. Voiding is symmetric. Posting a
        hold past its expiry voids it instead; the caller sees ``state == VOIDED``.
        """
        legs = [
            (int(r[0]), int(r[1]))
            for r in conn.execute(
                select(entries.c.account_id, entries.c.amount).where(
                    entries.c.movement_id == movement_id
                )
            )
        ]
        if not legs:
            raise MovementNotFound(str(movement_id))
        locked = self._lock(conn, (a for a, _ in legs))
        row = (
            conn.execute(select(movements).where(movements.c.id == movement_id).with_for_update())
        ).one()
        state = State(row.state)
        wanted = State.POSTED if post else State.VOIDED
        if state is wanted:
            return _movement(row, replayed=True)
        if state is not State.PENDING:
            raise InvalidTransition(state.value, "post" if post else "void")
        now = self.clock.now()
        if post and row.expires_at is not None and as_utc(row.expires_at) <= now:
            wanted, actor = State.VOIDED, "expiry"
        for account_id, amt in legs:
            acct = locked[account_id]
            if amt < 0:
                acct.debits_pending += amt
            else:
                acct.credits_pending -= amt
            if wanted is State.POSTED:
                acct.balance += amt
            elif acct.customer_id is not None and acct.usage_month == row.usage_month:
                acct.usage_amount = max(acct.usage_amount - abs(amt), 0)
            acct.dirty = True
        self._write_back(conn, locked.values())
        conn.execute(
            update(movements)
            .where(movements.c.id == movement_id)
            .values(state=wanted.value, settled_at=now, settled_by=actor[:120])
        )
        return self.get(conn, movement_id)

    def due_holds(self, conn: Connection, limit: int = 500) -> list[int]:
        """Pending movements whose hold has expired."""
        rows = conn.execute(
            select(movements.c.id)
            .where(movements.c.state == State.PENDING.value)
            .where(movements.c.expires_at <= self.clock.now())
            .order_by(movements.c.expires_at)
            .limit(limit)
        )
        return [int(r[0]) for r in rows]

    # ------------------------------------------------------------------ read
    def get(self, conn: Connection, movement_id: int) -> Movement:
        row = (conn.execute(select(movements).where(movements.c.id == movement_id))).first()
        if row is None:
            raise MovementNotFound(str(movement_id))
        return _movement(row)

    def find(
        self, conn: Connection, *, key: str | None = None, ref: str | None = None
    ) -> Movement | None:
        cond = movements.c.idempotency_key == key if key is not None else movements.c.ref == ref
        row = (conn.execute(select(movements).where(cond))).first()
        return None if row is None else _movement(row)

    def history(
        self, conn: Connection, customer_id: int, *, limit: int = 10, offset: int = 0
    ) -> list[Movement]:
        """A customer's movements, newest first."""
        rows = conn.execute(
            select(movements)
            .where(
                or_(
                    movements.c.debit_customer_id == customer_id,
                    movements.c.credit_customer_id == customer_id,
                )
            )
            .order_by(movements.c.created_at.desc(), movements.c.id.desc())
            .limit(limit)
            .offset(offset)
        )
        return [_movement(r) for r in rows]

    def system_balance(self, conn: Connection, party: SystemParty) -> int:
        """A system account's balance: the sum of its shards."""
        value = conn.scalar(
            select(func.coalesce(func.sum(accounts.c.balance), 0)).where(
                accounts.c.group_code == party.group_code
            )
        )
        return int(value or 0)


def record_audit(
    conn: Connection,
    *,
    at: datetime,
    actor: str,
    action: str,
    customer_id: int | None = None,
    movement_id: int | None = None,
    details: Mapping[str, Any] | None = None,
) -> None:
    conn.execute(
        audit_log.insert().values(
            at=at,
            actor=actor[:120],
            action=action,
            customer_id=customer_id,
            movement_id=movement_id,
            details=dict(details) if details else None,
        )
    )


def _customer_of(party: Party) -> int | None:
    return party.customer_id if isinstance(party, CustomerParty) else None


def _movement_from(movement_id: int, v: Mapping[str, Any], kind: Kind, state: State) -> Movement:
    """The Movement just inserted, from the values written (saves a read)."""
    return Movement(
        id=movement_id,
        ref=v["ref"],
        key=v["idempotency_key"],
        kind=kind,
        state=state,
        amount=v["amount"],
        fee=v["fee"],
        debit_customer_id=v["debit_customer_id"],
        credit_customer_id=v["credit_customer_id"],
        created_at=v["created_at"],
        expires_at=v["expires_at"],
        settled_at=v["settled_at"],
        actor=v["actor"],
        settled_by=v["settled_by"],
        description=v["description"],
        meta=v["meta"] or {},
    )


def _movement(row: Row[Any], *, replayed: bool = False) -> Movement:
    return Movement(
        id=int(row.id),
        ref=row.ref,
        key=row.idempotency_key,
        kind=Kind(row.kind),
        state=State(row.state),
        amount=int(row.amount),
        fee=int(row.fee),
        debit_customer_id=row.debit_customer_id,
        credit_customer_id=row.credit_customer_id,
        created_at=as_utc(row.created_at),
        expires_at=as_utc(row.expires_at) if row.expires_at is not None else None,
        settled_at=as_utc(row.settled_at) if row.settled_at is not None else None,
        actor=row.actor,
        settled_by=row.settled_by,
        description=row.description,
        meta=row.meta or {},
        replayed=replayed,
    )


def movements_of(rows: Sequence[Row[Any]]) -> list[Movement]:
    return [_movement(r) for r in rows]
