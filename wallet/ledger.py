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
"""

from __future__ import annotations

import random
import secrets
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Row, bindparam, func, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite

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


def new_ref() -> str:
    """A customer-facing reference such as ``KP7H2MX9QJ4T``."""
    return "KP" + "".join(secrets.choice(_REF_ALPHABET) for _ in range(10))


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

    # ------------------------------------------------------------------ create
    def move(self, conn: Connection, cmd: MoveMoney) -> Movement:
        """Create a posted or pending movement, exactly once per ``cmd.key``."""
        total = cmd.amount + cmd.fee
        if not isinstance(cmd.amount, int) or isinstance(cmd.amount, bool):
            raise ValidationFailed("amount must be an integer number of rupiah")
        if cmd.amount <= 0 or cmd.amount > self.limits.max_amount:
            raise InvalidAmount(cmd.amount, self.limits.max_amount)
        if cmd.fee < 0:
            raise ValidationFailed("fee must not be negative")
        if cmd.source == cmd.destination:
            raise ValidationFailed("source and destination are the same account")
        if not cmd.key or len(cmd.key) > 200:
            raise ValidationFailed("an idempotency key of 1..200 characters is required")
        now = self.clock.now()
        month = month_key(now)

        src, dst, fee_acct, locked = self._lock_parties(conn, cmd, now)

        expires_at = None
        if cmd.hold:
            minutes = cmd.hold_minutes or self.settings.ledger.hold_expiry_minutes
            expires_at = now + timedelta(minutes=minutes)
        request_hash = cmd.request_hash()
        values = {
            "ref": new_ref(),
            "idempotency_key": cmd.key,
            "request_hash": request_hash,
            "kind": cmd.kind.value,
            "state": State.PENDING.value if cmd.hold else State.POSTED.value,
            "amount": cmd.amount,
            "fee": cmd.fee,
            "debit_customer_id": _customer_of(cmd.source),
            "credit_customer_id": _customer_of(cmd.destination),
            "usage_month": month,
            "expires_at": expires_at,
            "created_at": now,
            "settled_at": None if cmd.hold else now,
            "actor": cmd.actor[:120],
            "settled_by": None if cmd.hold else cmd.actor[:120],
            "description": cmd.description[:200],
            "meta": dict(cmd.meta) or None,
        }
        row = conn.execute(_insert_movement_stmt(conn.dialect.name), values).first()
        if row is None:  # the key was used before: return what it did
            return self._replay(conn, cmd.key, request_hash)
        movement_id = int(row[0])

        self._check_source(src, cmd, total, month)
        self._check_destination(dst, cmd.amount, month)

        legs: list[tuple[_Acct, int]] = [(src, -total), (dst, cmd.amount)]
        if fee_acct is not None:
            legs.append((fee_acct, cmd.fee))
        conn.execute(
            _INSERT_ENTRY,
            [{"movement_id": movement_id, "account_id": a.id, "amount": amt} for a, amt in legs],
        )
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
            acct.dirty = True
        self._write_back(conn, locked)
        return _movement_from(movement_id, values)

    def _lock_parties(
        self, conn: Connection, cmd: MoveMoney, now: datetime
    ) -> tuple[_Acct, _Acct, _Acct | None, list[_Acct]]:
        """Lock the source, destination and fee accounts in one statement, in id order."""
        customer_ids = [
            p.customer_id for p in (cmd.source, cmd.destination) if isinstance(p, CustomerParty)
        ]
        system_ids = [
            self.system.pick(conn, p, now)
            for p in (cmd.source, cmd.destination)
            if isinstance(p, SystemParty)
        ]
        fee_id = self.system.pick(conn, FEE_INCOME, now) if cmd.fee else None
        if fee_id is not None:
            system_ids.append(fee_id)
        rows = conn.execute(_LOCK_PARTIES, {"cids": customer_ids, "ids": system_ids}).all()
        locked = [_Acct(*r) for r in rows]
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
        return src, dst, by_id[fee_id] if fee_id is not None else None, locked

    def _lock(self, conn: Connection, ids: Iterable[int]) -> dict[int, _Acct]:
        rows = conn.execute(_LOCK_PARTIES, {"cids": [], "ids": sorted(set(ids))})
        return {r[0]: _Acct(*r) for r in rows}

    def _replay(self, conn: Connection, key: str, request_hash: str) -> Movement:
        row = (conn.execute(select(movements).where(movements.c.idempotency_key == key))).one()
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
        params = [
            {
                "a_id": a.id,
                "a_balance": a.balance,
                "a_dp": a.debits_pending,
                "a_cp": a.credits_pending,
                "a_um": a.usage_month,
                "a_ua": a.usage_amount,
            }
            for a in accts
            if a.dirty
        ]
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


def _movement_from(movement_id: int, v: Mapping[str, Any]) -> Movement:
    """The Movement just inserted, from the values written (saves a read)."""
    return Movement(
        id=movement_id,
        ref=v["ref"],
        key=v["idempotency_key"],
        kind=Kind(v["kind"]),
        state=State(v["state"]),
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
