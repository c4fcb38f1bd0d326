"""6-digit single-use tokens for minimarts: top-up (amount fixed) and cash-out (funds held).

The code is stored only as an HMAC keyed with the server secret, unique among active
tokens; a minimart redeems it with the amount and its own reference (idempotent on that
reference). Expired cash-out tokens release their hold.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, select, update

from storage.schema import tokens
from wallet.clock import Clock, as_utc
from wallet.config import Settings
from wallet.errors import (
    IdempotencyConflict,
    TokenAlreadyRedeemed,
    TokenAmountMismatch,
    TokenExpired,
    TokenInvalid,
    ValidationFailed,
)
from wallet.ledger import Ledger
from wallet.model import CustomerParty, Kind, Movement, MoveMoney, SystemKind, SystemParty

CASHOUT_SETTLEMENT = SystemParty(SystemKind.CASHOUT_SETTLEMENT)


@dataclass(frozen=True, slots=True)
class IssuedToken:
    token_id: int
    code: str  # shown to the customer once; never stored
    purpose: str
    amount: int
    expires_at: datetime
    movement: Movement | None = None


@dataclass(frozen=True, slots=True)
class Redeemed:
    token_id: int
    purpose: str
    customer_id: int
    amount: int
    movement: Movement
    replayed: bool = False


@dataclass(frozen=True, slots=True)
class Expired:
    token_id: int
    purpose: str
    customer_id: int
    amount: int


class TokenService:
    def __init__(self, settings: Settings, clock: Clock, ledger: Ledger, key: bytes) -> None:
        self.settings = settings
        self.clock = clock
        self.ledger = ledger
        self._key = key

    def _hash(self, code: str) -> str:
        return hmac.new(self._key, f"token|{code}".encode(), hashlib.sha256).hexdigest()

    def _new_code(self, conn: Connection) -> tuple[str, str]:
        for _ in range(20):
            code = f"{secrets.randbelow(1_000_000):06d}"
            digest = self._hash(code)
            clash = conn.execute(
                select(tokens.c.id).where(tokens.c.code_hash == digest, tokens.c.state == "active")
            ).first()
            if clash is None:
                return code, digest
        raise RuntimeError("no free token code")  # pragma: no cover - 1e6 codes

    def issue_in(
        self,
        conn: Connection,
        *,
        purpose: str,
        customer_id: int,
        amount: int,
        key: str,
        actor: str,
    ) -> IssuedToken:
        """A top-up token, or a cash-out token holding ``amount`` (+ fee) of the balance."""
        money = self.settings.money
        if purpose == "topup":
            if amount < money.topup_token_min:
                raise ValidationFailed(f"top-up tokens start at {money.topup_token_min}")
            minutes = money.topup_token_minutes
        elif purpose == "cashout":
            if amount not in money.cashout_denominations:
                raise ValidationFailed("not an offered cash-out amount")
            minutes = money.cashout_token_minutes
        else:
            raise ValidationFailed(f"unknown token purpose {purpose}")
        if conn.execute(select(tokens.c.id).where(tokens.c.idempotency_key == key)).first():
            raise IdempotencyConflict(key)  # the code cannot be shown twice
        now = self.clock.now()
        expires_at = now + timedelta(minutes=minutes)
        movement = None
        if purpose == "cashout":
            movement = self.ledger.move(
                conn,
                MoveMoney(
                    key=f"{key}:hold",
                    kind=Kind.CASHOUT,
                    source=CustomerParty(customer_id),
                    destination=CASHOUT_SETTLEMENT,
                    amount=amount,
                    fee=money.cashout_fee,
                    hold=True,
                    hold_minutes=minutes,
                    actor=actor,
                    description="Tarik tunai di minimarket",
                ),
            )
        code, digest = self._new_code(conn)
        token_id = conn.scalar(
            tokens.insert()
            .values(
                purpose=purpose,
                code_hash=digest,
                customer_id=customer_id,
                amount=amount,
                movement_id=movement.id if movement else None,
                state="active",
                expires_at=expires_at,
                created_at=now,
                idempotency_key=key,
            )
            .returning(tokens.c.id)
        )
        assert token_id is not None
        return IssuedToken(int(token_id), code, purpose, amount, expires_at, movement)

    def redeem_in(
        self, conn: Connection, *, code: str, amount: int, partner: str, partner_ref: str
    ) -> Redeemed:
        """A minimart redeems a token. Idempotent on (partner, partner_ref)."""
        previous = conn.execute(
            select(tokens).where(tokens.c.partner == partner, tokens.c.partner_ref == partner_ref)
        ).first()
        if previous is not None:
            return self._redeemed(conn, previous, replayed=True)
        if not (len(code) == 6 and code.isascii() and code.isdigit()):
            raise TokenInvalid()
        row = conn.execute(
            select(tokens)
            .where(tokens.c.code_hash == self._hash(code))
            .order_by(tokens.c.id.desc())
            .limit(1)
            .with_for_update()
        ).first()
        if row is None:
            raise TokenInvalid()
        if row.state == "redeemed":
            raise TokenAlreadyRedeemed()
        now = self.clock.now()
        if row.state == "expired" or as_utc(row.expires_at) <= now:
            raise TokenExpired()
        if int(row.amount) != amount:
            raise TokenAmountMismatch(int(row.amount), amount)
        actor = f"partner:{partner}"
        if row.purpose == "topup":
            movement = self.ledger.move(
                conn,
                MoveMoney(
                    key=f"token:{row.id}",
                    kind=Kind.TOPUP,
                    source=SystemParty(SystemKind.TOPUP_FLOAT, f"minimart:{partner}"),
                    destination=CustomerParty(row.customer_id),
                    amount=amount,
                    actor=actor,
                    description=f"Isi saldo di {partner.title()}",
                    meta={"partner_ref": partner_ref},
                ),
            )
        else:
            movement = self.ledger.settle(conn, int(row.movement_id), post=True, actor=actor)
        conn.execute(
            update(tokens)
            .where(tokens.c.id == row.id)
            .values(state="redeemed", redeemed_at=now, partner=partner, partner_ref=partner_ref)
        )
        return Redeemed(int(row.id), row.purpose, int(row.customer_id), amount, movement)

    def _redeemed(self, conn: Connection, row: Any, *, replayed: bool) -> Redeemed:
        if row.purpose == "topup":
            movement = self.ledger.find(conn, key=f"token:{row.id}")
        else:
            movement = self.ledger.get(conn, int(row.movement_id))
        assert movement is not None
        return Redeemed(
            int(row.id),
            row.purpose,
            int(row.customer_id),
            int(row.amount),
            movement,
            replayed=replayed,
        )

    def expire_in(self, conn: Connection, limit: int = 200) -> list[Expired]:
        """Expire active tokens past their time; a cash-out token's hold is voided."""
        now = self.clock.now()
        rows = conn.execute(
            select(tokens)
            .where(tokens.c.state == "active", tokens.c.expires_at <= now)
            .order_by(tokens.c.id)
            .limit(limit)
            .with_for_update(skip_locked=True)
        ).all()
        done: list[Expired] = []
        for row in rows:
            if row.movement_id is not None:
                held = self.ledger.get(conn, int(row.movement_id))
                if held.state.value == "pending":
                    self.ledger.settle(conn, int(row.movement_id), post=False, actor="expiry")
            conn.execute(update(tokens).where(tokens.c.id == row.id).values(state="expired"))
            done.append(Expired(int(row.id), row.purpose, int(row.customer_id), int(row.amount)))
        return done
