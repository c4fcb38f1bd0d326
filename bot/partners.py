"""Partner callbacks: bank virtual-account notifications and minimart token redemption.

Both are signed (HMAC-SHA256 over "<timestamp>.<body>" with KASPRO_PARTNER_SECRET, a
5-minute window) and idempotent on the partner's reference. The HTTP routes, the
``kaspro sandbox topup`` command and the terminal chat's ``/sandbox`` commands all go
through ``handle``.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from typing import Any

from bot.engine import Engine, movement_receipt
from flows.core import Money, Say, SendReceipt, Term
from wallet import partners
from wallet.errors import (
    AccountNotActive,
    BalanceCapExceeded,
    CustomerNotFound,
    InvalidAmount,
    MonthlyLimitExceeded,
    TokenAlreadyRedeemed,
    TokenAmountMismatch,
    TokenExpired,
    TokenInvalid,
    ValidationFailed,
    WalletError,
)
from wallet.service import Wallet
from wallet.tokens import Redeemed
from wallet.topup import bank_by_code, va_topup_in

log = logging.getLogger("kaspro.partners")


@dataclass(frozen=True, slots=True)
class Answer:
    status: int
    body: dict[str, Any]


REFUSALS: dict[type[WalletError], tuple[int, str]] = {
    BalanceCapExceeded: (422, "balance_cap"),
    MonthlyLimitExceeded: (422, "monthly_cap"),
    AccountNotActive: (422, "not_active"),
    InvalidAmount: (422, "invalid_amount"),
    CustomerNotFound: (404, "unknown_account"),
    TokenInvalid: (404, "token_invalid"),
    TokenExpired: (410, "token_expired"),
    TokenAlreadyRedeemed: (409, "token_redeemed"),
    TokenAmountMismatch: (422, "amount_mismatch"),
    ValidationFailed: (400, "invalid"),
}


class Partners:
    def __init__(self, wallet: Wallet, engine: Engine, secret: bytes | None = None) -> None:
        self.wallet = wallet
        self.engine = engine
        configured = wallet.settings.partner_secret
        if secret is None and configured is not None:
            secret = configured.get_secret_value().encode()
        self.secret = secret

    def authentic(self, body: bytes, timestamp: str, signature: str) -> bool:
        if self.secret is None:
            return False
        window = self.wallet.settings.money.partner_window_seconds
        return partners.verify(self.secret, timestamp, body, signature, time.time(), window)

    async def handle(self, kind: str, body: bytes, timestamp: str, signature: str) -> Answer:
        if self.secret is None:
            return Answer(404, {"status": "disabled"})
        if not self.authentic(body, timestamp, signature):
            return Answer(401, {"status": "rejected", "reason": "bad_signature"})
        try:
            data = json.loads(body)
            if not isinstance(data, dict):
                raise ValueError("object expected")
            amount = data["amount"]
            if not isinstance(amount, int) or isinstance(amount, bool):
                raise ValueError("amount must be an integer")
        except (ValueError, KeyError) as exc:
            return Answer(400, {"status": "rejected", "reason": "malformed", "detail": str(exc)})
        try:
            if kind == "va":
                return await self._va(data, amount)
            return await self._redeem(data, amount)
        except WalletError as err:
            status, reason = REFUSALS.get(type(err), (422, err.code))
            return Answer(status, {"status": "rejected", "reason": reason})
        except (KeyError, TypeError) as exc:
            return Answer(400, {"status": "rejected", "reason": "malformed", "detail": str(exc)})

    async def _va(self, data: dict[str, Any], amount: int) -> Answer:
        bank = bank_by_code(self.wallet.settings, str(data["bank_code"]))
        va, reference = str(data["va_number"]), str(data["reference"])
        if not reference:
            raise ValidationFailed("reference required")
        source = f"VA {bank.name}"
        try:
            moved = await self.wallet.run(
                va_topup_in,
                self.wallet.settings,
                self.wallet.ledger,
                bank_code=bank.code,
                va=va,
                amount=amount,
                reference=reference,
            )
        except (BalanceCapExceeded, MonthlyLimitExceeded, AccountNotActive) as err:
            customer = await self.wallet.customer_by_phone("+62" + va.removeprefix(bank.va_prefix))
            if customer is not None:
                reason = {
                    "balance_cap_exceeded": "balance_cap",
                    "monthly_limit_exceeded": "monthly_cap",
                }.get(err.code, "not_active")
                await self.engine.notify_customer(
                    customer.id,
                    Say(
                        "notify.topup_refused",
                        {
                            "amount": Money(amount),
                            "source": source,
                            "reason": Term(f"reason.{reason}"),
                        },
                    ),
                )
            raise
        if not moved.replayed and moved.credit_customer_id is not None:
            await self.engine.notify_customer(
                moved.credit_customer_id,
                (
                    Say(
                        "notify.topup",
                        {"amount": Money(amount), "source": source, "ref": moved.ref},
                    ),
                    SendReceipt(
                        movement_receipt(moved, from_party=source, lines=[["bank", bank.name]])
                    ),
                ),
            )
        return Answer(200, {"status": "credited", "ref": moved.ref, "replayed": moved.replayed})

    async def _redeem(self, data: dict[str, Any], amount: int) -> Answer:
        partner = str(data["partner"]).lower()
        if partner not in self.wallet.settings.money.minimarts:
            raise ValidationFailed("unknown partner")
        done: Redeemed = await self.wallet.run(
            self.wallet.tokens.redeem_in,
            code=str(data["token"]),
            amount=amount,
            partner=partner,
            partner_ref=str(data["reference"]),
        )
        if not done.replayed:
            key = "notify.topup" if done.purpose == "topup" else "notify.cashout_done"
            await self.engine.notify_customer(
                done.customer_id,
                (
                    Say(
                        key,
                        {
                            "amount": Money(amount),
                            "source": partner.title(),
                            "ref": done.movement.ref,
                        },
                    ),
                    SendReceipt(movement_receipt(done.movement, from_party=partner.title())),
                ),
            )
        return Answer(
            200,
            {
                "status": "redeemed",
                "purpose": done.purpose,
                "ref": done.movement.ref,
                "replayed": done.replayed,
            },
        )

    async def expire_tokens(self) -> int:
        expired = await self.wallet.run(self.wallet.tokens.expire_in)
        for t in expired:
            await self.engine.notify_customer(
                t.customer_id,
                Say(
                    "notify.token_expired",
                    {"what": Term(f"kind.{t.purpose}"), "amount": Money(t.amount)},
                ),
            )
        return len(expired)


def signed_request(secret: bytes, payload: dict[str, Any]) -> tuple[bytes, str, str]:
    """A body and its headers' values, as a partner would send them (sandbox, tests)."""
    body = json.dumps(payload, separators=(",", ":")).encode()
    ts = int(time.time())
    return body, str(ts), partners.sign(secret, ts, body)
