"""Customers: registration, tier and status changes (audited), PIN state."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from sqlalchemy import Connection, Row, func, select, update

from storage.schema import accounts, customers
from wallet.clock import as_utc
from wallet.errors import AlreadyRegistered, CustomerNotFound, ValidationFailed
from wallet.ledger import record_audit, wallet_code
from wallet.model import Customer, Status, Tier
from wallet.phone import normalize_phone

LANGUAGES = ("id", "en")


@dataclass(frozen=True, slots=True)
class NewCustomer:
    phone: str
    first_name: str
    last_name: str = ""
    birth_date: date | None = None
    email: str | None = None
    language: str = "id"

    def normalized(self) -> NewCustomer:
        first, last = self.first_name.strip(), self.last_name.strip()
        if not first or len(first) > 100 or len(last) > 100:
            raise ValidationFailed("first name of 1..100 characters, last name up to 100")
        if self.language not in LANGUAGES:
            raise ValidationFailed(f"language must be one of {LANGUAGES}")
        email = self.email.strip() if self.email else None
        return NewCustomer(
            normalize_phone(self.phone), first, last, self.birth_date, email or None, self.language
        )


def to_customer(row: Row[Any]) -> Customer:
    return Customer(
        id=int(row.id),
        phone=row.phone,
        first_name=row.first_name,
        last_name=row.last_name,
        birth_date=row.birth_date,
        email=row.email,
        language=row.language,
        tier=Tier(row.tier),
        status=Status(row.status),
        has_pin=row.pin_hash is not None,
        failed_pin_attempts=int(row.failed_pin_attempts),
        created_at=as_utc(row.created_at),
    )


def find_conflict(conn: Connection, phone: str, email: str | None) -> str | None:
    """Which unique field (phone, email) of a new customer is already taken."""
    if conn.scalar(select(customers.c.id).where(customers.c.phone == phone)):
        return "phone"
    if email and conn.scalar(
        select(customers.c.id).where(customers.c.email_normalized == email.lower())
    ):
        return "email"
    return None


def insert_customer(
    conn: Connection, new: NewCustomer, pin_hash: str | None, now: datetime, actor: str
) -> Customer:
    clash = find_conflict(conn, new.phone, new.email)
    if clash:
        raise AlreadyRegistered(clash)
    customer_id = conn.scalar(
        customers.insert()
        .values(
            phone=new.phone,
            first_name=new.first_name,
            last_name=new.last_name,
            birth_date=new.birth_date,
            email=new.email,
            email_normalized=new.email.lower() if new.email else None,
            language=new.language,
            tier=Tier.REGULAR.value,
            status=Status.ACTIVE.value,
            pin_hash=pin_hash,
            failed_pin_attempts=0,
            created_at=now,
            updated_at=now,
        )
        .returning(customers.c.id)
    )
    assert customer_id is not None
    conn.execute(
        accounts.insert().values(
            code=wallet_code(customer_id),
            group_code=wallet_code(customer_id),
            shard=0,
            kind="wallet",
            customer_id=customer_id,
            created_at=now,
        )
    )
    record_audit(
        conn,
        at=now,
        actor=actor,
        action="customer.registered",
        customer_id=customer_id,
        details={"tier": Tier.REGULAR.value, "status": Status.ACTIVE.value},
    )
    return load_customer(conn, customer_id)


def load_customer(conn: Connection, customer_id: int, *, for_update: bool = False) -> Customer:
    if for_update:
        # Lock the wallet account row first: the same lock every money movement takes,
        # so a status or tier change never interleaves with a movement's checks.
        conn.execute(
            select(accounts.c.id).where(accounts.c.customer_id == customer_id).with_for_update()
        )
    stmt = select(customers).where(customers.c.id == customer_id)
    row = (conn.execute(stmt.with_for_update() if for_update else stmt)).first()
    if row is None:
        raise CustomerNotFound(str(customer_id))
    return to_customer(row)


def customer_by_phone(conn: Connection, phone: str) -> Customer | None:
    row = (conn.execute(select(customers).where(customers.c.phone == phone))).first()
    return None if row is None else to_customer(row)


def change_customer(
    conn: Connection,
    customer_id: int,
    /,
    *,
    now: datetime,
    actor: str,
    action: str,
    reason: str = "",
    **values: Any,
) -> Customer:
    """Update a customer's row under the account lock and audit who did it and why."""
    before = load_customer(conn, customer_id, for_update=True)
    conn.execute(
        update(customers).where(customers.c.id == customer_id).values(updated_at=now, **values)
    )
    details: dict[str, Any] = {
        k: v for k, v in values.items() if k in ("tier", "status", "failed_pin_attempts")
    }
    if "tier" in values:
        details["tier_before"] = before.tier.value
    if "status" in values:
        details["status_before"] = before.status.value
    if reason:
        details["reason"] = reason
    record_audit(conn, at=now, actor=actor, action=action, customer_id=customer_id, details=details)
    return load_customer(conn, customer_id)


def bump_failed_pin(conn: Connection, customer_id: int, now: datetime) -> int:
    """Count one wrong PIN atomically; returns the new count."""
    count = conn.scalar(
        update(customers)
        .where(customers.c.id == customer_id)
        .values(failed_pin_attempts=customers.c.failed_pin_attempts + 1, updated_at=now)
        .returning(customers.c.failed_pin_attempts)
    )
    return int(count or 0)


def count_customers(conn: Connection) -> int:
    return int(conn.scalar(select(func.count()).select_from(customers)) or 0)
