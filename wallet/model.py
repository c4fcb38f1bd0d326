"""Value types of the wallet core: tiers, statuses, movement kinds, commands and results."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from enum import StrEnum


class Tier(StrEnum):
    REGULAR = "regular"
    PREMIUM = "premium"


class Status(StrEnum):
    ACTIVE = "active"
    LOCKED = "locked"  # PIN locked: until a PIN reset
    BLOCKED = "blocked"  # by support
    DEACTIVATED = "deactivated"  # lost phone
    CLOSED = "closed"  # un-registered


# Customers in these states may still be credited (a PIN lock does not stop a salary).
CAN_RECEIVE = frozenset({Status.ACTIVE, Status.LOCKED})


class Kind(StrEnum):
    TOPUP = "topup"
    TRANSFER = "transfer"  # wallet to wallet
    BANK_TRANSFER = "bank_transfer"
    CASHOUT = "cashout"
    BILL = "bill"  # PPOB
    QRIS = "qris"
    REFUND = "refund"
    ADJUSTMENT = "adjustment"


# What a Regular customer may not send (terms' services table).
PREMIUM_ONLY = frozenset({Kind.TRANSFER, Kind.BANK_TRANSFER, Kind.CASHOUT})


class State(StrEnum):
    PENDING = "pending"
    POSTED = "posted"
    VOIDED = "voided"


class SystemKind(StrEnum):
    TOPUP_FLOAT = "topup_float"
    BILLER_SETTLEMENT = "biller_settlement"
    MERCHANT = "merchant"
    DISBURSEMENT_CLEARING = "disbursement_clearing"
    CASHOUT_SETTLEMENT = "cashout_settlement"
    FEE_INCOME = "fee_income"


@dataclass(frozen=True, slots=True)
class CustomerParty:
    """A customer's wallet account."""

    customer_id: int


@dataclass(frozen=True, slots=True)
class SystemParty:
    """A system account, e.g. ``SystemParty(SystemKind.TOPUP_FLOAT, "va:014")``."""

    kind: SystemKind
    name: str = "main"

    @property
    def group_code(self) -> str:
        return f"{self.kind.value}:{self.name}"


Party = CustomerParty | SystemParty
FEE_INCOME = SystemParty(SystemKind.FEE_INCOME)


@dataclass(frozen=True, slots=True)
class MoveMoney:
    """One money command. ``key`` is the client's idempotency key."""

    key: str
    kind: Kind
    source: Party
    destination: Party
    amount: int
    fee: int = 0
    hold: bool = False  # True: a pending transfer, posted or voided later
    hold_minutes: int | None = None
    actor: str = "system"
    description: str = ""
    meta: Mapping[str, str | int | None] = field(default_factory=dict)

    def request_hash(self) -> str:
        """What a repeat with the same key must match (the actor may differ on retries)."""
        payload = {
            "kind": self.kind.value,
            "source": _party_json(self.source),
            "destination": _party_json(self.destination),
            "amount": self.amount,
            "fee": self.fee,
            "hold": self.hold,
            "meta": dict(sorted(self.meta.items())),
        }
        raw = json.dumps(payload, sort_keys=True, separators=(",", ":")).encode()
        return hashlib.sha256(raw).hexdigest()


def _party_json(party: Party) -> str:
    if isinstance(party, CustomerParty):
        return f"customer:{party.customer_id}"
    return party.group_code


@dataclass(frozen=True, slots=True)
class Movement:
    id: int
    ref: str
    key: str
    kind: Kind
    state: State
    amount: int
    fee: int
    debit_customer_id: int | None
    credit_customer_id: int | None
    created_at: datetime
    expires_at: datetime | None
    settled_at: datetime | None
    actor: str
    settled_by: str | None
    description: str
    meta: Mapping[str, str | int | None]
    replayed: bool = False  # True when this is the stored result of an earlier request


@dataclass(frozen=True, slots=True)
class Customer:
    id: int
    phone: str
    first_name: str
    last_name: str
    birth_date: date | None
    email: str | None
    language: str
    tier: Tier
    status: Status
    has_pin: bool
    failed_pin_attempts: int
    created_at: datetime

    @property
    def full_name(self) -> str:
        return f"{self.first_name} {self.last_name}".strip()


@dataclass(frozen=True, slots=True)
class Balance:
    customer_id: int
    tier: Tier
    balance: int
    available: int  # balance - pending debits
    pending_debits: int
    pending_credits: int
    balance_cap: int
    month_used: int
    monthly_cap: int

    @property
    def cap_room(self) -> int:
        """How much more may still come in under the balance cap."""
        return max(self.balance_cap - self.balance - self.pending_credits, 0)

    @property
    def month_room(self) -> int:
        return max(self.monthly_cap - self.month_used, 0)
