"""``Wallet``: the wallet core's front door.

Each method runs in its own transaction (retried on transient conflicts). Callers that
must combine wallet work with their own writes in one transaction (the conversation
engine) call ``wallet.ledger`` and ``wallet.customers`` functions on their connection
inside ``db.write``.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
from collections.abc import Callable
from typing import Any, Concatenate, ParamSpec, TypeVar

from sqlalchemy import Connection, select, update
from sqlalchemy.exc import DBAPIError, IntegrityError

from storage.db import Database
from storage.schema import accounts, customers
from wallet import customers as cust
from wallet.clock import Clock, SystemClock, month_key
from wallet.config import Settings
from wallet.errors import (
    AlreadyRegistered,
    CustomerNotFound,
    HoldExpired,
    InvalidPin,
    PinLocked,
    PinNotSet,
    WeakPin,
)
from wallet.ledger import Ledger, SystemAccounts
from wallet.model import (
    FEE_INCOME,
    Balance,
    Customer,
    Movement,
    MoveMoney,
    State,
    Status,
    SystemParty,
    Tier,
)
from wallet.otp import OtpService
from wallet.phone import normalize_phone
from wallet.security import PinHasher, check_new_pin
from wallet.tokens import TokenService

log = logging.getLogger("kaspro.wallet")
P = ParamSpec("P")
T = TypeVar("T")

# PostgreSQL: serialization_failure, deadlock_detected. SQLite: busy past the timeout.
_TRANSIENT_SQLSTATES = {"40001", "40P01"}


def _is_transient(exc: DBAPIError) -> bool:
    orig = exc.orig
    for candidate in (orig, getattr(orig, "__cause__", None)):
        if getattr(candidate, "sqlstate", None) in _TRANSIENT_SQLSTATES:
            return True
    return "database is locked" in str(orig)


def _balance(conn: Connection, customer_id: int) -> Any:
    return conn.execute(
        select(
            accounts.c.balance,
            accounts.c.debits_pending,
            accounts.c.credits_pending,
            accounts.c.usage_month,
            accounts.c.usage_amount,
            customers.c.tier,
        )
        .select_from(accounts.join(customers, customers.c.id == accounts.c.customer_id))
        .where(accounts.c.customer_id == customer_id)
    ).first()


def _pin_state(conn: Connection, customer_id: int) -> Any:
    return conn.execute(
        select(customers.c.pin_hash, customers.c.status).where(customers.c.id == customer_id)
    ).first()


class Wallet:
    def __init__(
        self,
        db: Database,
        settings: Settings,
        clock: Clock | None = None,
        secret_key: bytes | None = None,
    ) -> None:
        self.db = db
        self.settings = settings
        self.clock: Clock = clock or SystemClock()
        if secret_key is None and settings.secret_key is not None:
            secret_key = settings.secret_key.get_secret_value().encode()
        if secret_key is None:
            log.warning("KASPRO_SECRET_KEY is not set: using a per-process key (development only)")
            secret_key = secrets.token_bytes(32)
        self._secret_key = secret_key
        self.system = SystemAccounts(settings.ledger.system_account_shards)
        self.ledger = Ledger(settings, self.clock, self.system)
        self.pins = PinHasher(settings.security)
        self.otp = OtpService(db, settings.security, self.clock, secret_key)
        self.tokens = TokenService(settings, self.clock, self.ledger, secret_key)

    def keyed_digest(self, *parts: str) -> str:
        """HMAC-SHA256 of ``parts`` with the server secret (fingerprints, never secrets)."""
        msg = "\x1f".join(parts).encode()
        return hmac.new(self._secret_key, msg, hashlib.sha256).hexdigest()

    async def run(
        self, work: Callable[Concatenate[Connection, P], T], *args: P.args, **kwargs: P.kwargs
    ) -> T:
        """Run ``work(conn, …)`` in a write transaction, retrying transient conflicts."""
        attempts = self.settings.db.retry_attempts
        for attempt in range(1, attempts + 1):
            try:
                return await self.db.write(work, *args, **kwargs)
            except IntegrityError:
                # A concurrent request won a unique race (idempotency key, phone...):
                # the retry reads what it wrote.
                if attempt == attempts:
                    raise
            except DBAPIError as exc:
                if not _is_transient(exc) or attempt == attempts:
                    raise
        raise AssertionError("unreachable")

    # ---------------------------------------------------------------- money
    async def move(self, cmd: MoveMoney) -> Movement:
        """Move money (posted now, or held when ``cmd.hold``). Idempotent on ``cmd.key``."""
        await self.ensure_system_accounts(
            *(p for p in (cmd.source, cmd.destination) if isinstance(p, SystemParty)),
            *((FEE_INCOME,) if cmd.fee else ()),
        )
        return await self.run(self.ledger.move, cmd)

    async def ensure_system_accounts(self, *parties: SystemParty) -> None:
        """Create system accounts' shard rows once, in their own committed transaction."""
        for party in parties:
            if self.system.cached(party) is None:
                ids = await self.run(self.system.create, party, self.clock.now())
                self.system.remember(party, ids)

    async def post(self, movement_id: int, actor: str) -> Movement:
        """Post a hold. Raises HoldExpired (after voiding it) when its time ran out."""
        result = await self.run(self.ledger.settle, movement_id, post=True, actor=actor)
        if result.state is State.VOIDED:
            raise HoldExpired()
        return result

    async def void(self, movement_id: int, actor: str) -> Movement:
        return await self.run(self.ledger.settle, movement_id, post=False, actor=actor)

    async def expire_holds(self) -> int:
        """Void every hold past its expiry. Returns how many were voided."""
        done = 0
        while due := await self.db.read(self.ledger.due_holds):
            for movement_id in due:
                moved = await self.run(self.ledger.settle, movement_id, post=False, actor="expiry")
                done += not moved.replayed
        return done

    async def movement(self, movement_id: int) -> Movement:
        return await self.db.read(self.ledger.get, movement_id)

    async def history(self, customer_id: int, limit: int = 10, offset: int = 0) -> list[Movement]:
        return await self.db.read(self.ledger.history, customer_id, limit=limit, offset=offset)

    async def balance(self, customer_id: int) -> Balance:
        return await self.db.read(self.balance_in, customer_id)

    def balance_in(self, conn: Connection, customer_id: int) -> Balance:
        row = _balance(conn, customer_id)
        if row is None:
            raise CustomerNotFound(str(customer_id))
        tier = Tier(row.tier)
        limits = self.ledger.limits
        used = row.usage_amount if row.usage_month == month_key(self.clock.now()) else 0
        return Balance(
            customer_id=customer_id,
            tier=tier,
            balance=int(row.balance),
            available=int(row.balance - row.debits_pending),
            pending_debits=int(row.debits_pending),
            pending_credits=int(row.credits_pending),
            balance_cap=limits.balance_cap[tier],
            month_used=int(used),
            monthly_cap=limits.monthly_cap[tier],
        )

    # ---------------------------------------------------------------- customers
    async def register(
        self, new: cust.NewCustomer, *, pin: str | None = None, actor: str = "customer"
    ) -> Customer:
        """Create a Regular, active customer with a wallet account (and PIN, if given)."""
        new = new.normalized()
        pin_hash = None
        if pin is not None:
            check_new_pin(pin, new.birth_date)
            pin_hash = await self.pins.hash(pin)
        now = self.clock.now()
        try:
            return await self.db.write(cust.insert_customer, new, pin_hash, now, actor)
        except IntegrityError:  # lost a race with a concurrent registration
            clash = await self.db.read(cust.find_conflict, new.phone, new.email)
            raise AlreadyRegistered(clash or "phone") from None

    async def customer(self, customer_id: int) -> Customer:
        return await self.db.read(cust.load_customer, customer_id)

    async def customer_by_phone(self, phone: str) -> Customer | None:
        return await self.db.read(cust.customer_by_phone, normalize_phone(phone))

    async def set_status(
        self, customer_id: int, status: Status, *, actor: str, reason: str = ""
    ) -> Customer:
        return await self.run(
            cust.change_customer,
            customer_id,
            now=self.clock.now(),
            actor=actor,
            action="customer.status",
            reason=reason,
            status=status.value,
        )

    async def set_tier(
        self, customer_id: int, tier: Tier, *, actor: str, reason: str = ""
    ) -> Customer:
        return await self.run(
            cust.change_customer,
            customer_id,
            now=self.clock.now(),
            actor=actor,
            action="customer.tier",
            reason=reason,
            tier=tier.value,
        )

    # ---------------------------------------------------------------- PIN
    async def verify_pin(self, customer_id: int, pin: str) -> None:
        """Return when ``pin`` is right. A wrong one is counted (and committed) before
        InvalidPin is raised; the last allowed wrong one locks the customer (PinLocked)."""
        row = await self.db.read(_pin_state, customer_id)
        if row is None:
            raise CustomerNotFound(str(customer_id))
        if row.status == Status.LOCKED.value:
            raise PinLocked()
        if row.pin_hash is None:
            raise PinNotSet()
        if await self.pins.verify(row.pin_hash, pin):
            new_hash = row.pin_hash
            if self.pins.needs_rehash(row.pin_hash):
                new_hash = await self.pins.hash(pin)
            await self.run(_pin_ok, customer_id, new_hash)
            return
        limit = self.settings.security.max_pin_attempts
        count = await self.run(_pin_wrong, customer_id, self.clock.now(), limit)
        if count >= limit:
            raise PinLocked()
        raise InvalidPin(limit - count)

    async def reset_pin(
        self, customer_id: int, new_pin: str, *, actor: str = "customer"
    ) -> Customer:
        """Set a new PIN after the caller verified an OTP; unlocks a PIN-locked customer."""
        current = await self.customer(customer_id)
        check_new_pin(new_pin, current.birth_date)
        new_hash = await self.pins.hash(new_pin)
        return await self.run(pin_reset_in, customer_id, new_hash, self.clock.now(), actor)

    async def change_pin(self, customer_id: int, old_pin: str, new_pin: str) -> Customer:
        """Change a known PIN. The old one is checked (and counted) like any PIN."""
        current = await self.customer(customer_id)
        check_new_pin(new_pin, current.birth_date)
        await self.verify_pin(customer_id, old_pin)
        if new_pin == old_pin:
            raise WeakPin("same_as_old")
        new_hash = await self.pins.hash(new_pin)
        return await self.run(
            cust.change_customer,
            customer_id,
            now=self.clock.now(),
            actor="customer",
            action="customer.pin_changed",
            pin_hash=new_hash,
            failed_pin_attempts=0,
        )


def _pin_ok(conn: Connection, customer_id: int, pin_hash: str) -> None:
    conn.execute(
        update(customers)
        .where(customers.c.id == customer_id)
        .where(customers.c.status != Status.LOCKED.value)
        .values(failed_pin_attempts=0, pin_hash=pin_hash)
    )


def _pin_wrong(conn: Connection, customer_id: int, now: Any, limit: int) -> int:
    count = cust.bump_failed_pin(conn, customer_id, now)
    if count >= limit and cust.load_customer(conn, customer_id).status is Status.ACTIVE:
        cust.change_customer(
            conn,
            customer_id,
            now=now,
            actor="security",
            action="customer.status",
            reason="too many wrong PINs",
            status=Status.LOCKED.value,
        )
    return count


def pin_reset_in(
    conn: Connection, customer_id: int, pin_hash: str, now: Any, actor: str
) -> Customer:
    """Store a new PIN after an OTP check: clears wrong attempts, unlocks a PIN lock."""
    fresh = cust.load_customer(conn, customer_id, for_update=True)
    values: dict[str, Any] = {"pin_hash": pin_hash, "failed_pin_attempts": 0}
    if fresh.status is Status.LOCKED:
        values["status"] = Status.ACTIVE.value
    return cust.change_customer(
        conn, customer_id, now=now, actor=actor, action="customer.pin_reset", **values
    )
