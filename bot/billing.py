"""Settling bill payments outside a conversation: the biller's signed callback and the
reconciliation job (``kaspro reconcile``, and ``kaspro serve`` every few seconds)."""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

from sqlalchemy import Connection, select

from bot.engine import Engine
from flows.core import Money, Say
from storage.schema import movements
from wallet.billers import PayResult, bill_product, record_serial
from wallet.errors import InvalidTransition
from wallet.model import Kind, Movement, State
from wallet.service import Wallet

log = logging.getLogger("kaspro.billing")


class Billing:
    def __init__(self, wallet: Wallet, engine: Engine) -> None:
        self.wallet = wallet
        self.engine = engine

    async def settle(self, ref: str, result: PayResult, actor: str) -> Movement | None:
        """Apply the biller's answer to the hold with our reference ``ref``; tell the
        customer if this call is the one that settled it. Safe to repeat and to race."""
        if result.status == "pending":
            return None
        moved: Movement | None = await self.wallet.run(_settle, self.wallet, ref, result, actor)
        if moved is None or moved.replayed or moved.debit_customer_id is None:
            return moved
        meta = dict(moved.meta)
        total = Money(moved.amount + moved.fee)
        if moved.kind is Kind.BANK_TRANSFER:
            name = str(meta.get("account_name", ""))
            key = "notify.bank_done" if moved.state is State.POSTED else "notify.bank_failed"
            await self.engine.notify_customer(
                moved.debit_customer_id, Say(key, {"name": name, "ref": moved.ref, "total": total})
            )
            return moved
        product = str(meta.get("product", ""))
        try:
            name = bill_product(self.wallet.settings.bills.products, product).name
        except Exception:
            name = product
        if moved.state is State.POSTED:
            message = Say(
                "notify.bill_done",
                {"product": name, "ref": moved.ref, "serial": result.serial or "-"},
            )
        else:
            message = Say(
                "notify.bill_failed",
                {"product": name, "ref": moved.ref, "total": Money(moved.amount + moved.fee)},
            )
        await self.engine.notify_customer(moved.debit_customer_id, message)
        return moved

    async def reconcile(self, older_than_seconds: int | None = None) -> int:
        """Ask the biller about every bill hold pending longer than the threshold."""
        threshold = (
            older_than_seconds
            if older_than_seconds is not None
            else self.wallet.settings.bills.reconcile_after_seconds
        )
        cutoff = self.wallet.clock.now() - timedelta(seconds=threshold)
        pending = await self.wallet.db.read(_pending_bills, cutoff)
        settled = 0
        for ref, kind, meta in pending:
            try:
                if kind == Kind.BANK_TRANSFER.value:
                    result = await self.engine.disbursement.status(ref)
                else:
                    product = bill_product(
                        self.wallet.settings.bills.products, str(meta.get("product", ""))
                    )
                    result = await self.engine.biller.status(
                        ref, product, str(meta.get("customer_no", ""))
                    )
            except Exception:
                log.exception("status check failed", extra={"ref": ref})
                continue
            moved = await self.settle(ref, result, actor="biller:status")
            settled += moved is not None and not moved.replayed
        return settled


def _settle(
    conn: Connection, wallet: Wallet, ref: str, result: PayResult, actor: str
) -> Movement | None:
    found = wallet.ledger.find(conn, ref=ref)
    if found is None or found.kind not in (Kind.BILL, Kind.BANK_TRANSFER):
        return None
    try:
        moved = wallet.ledger.settle(conn, found.id, post=result.status == "success", actor=actor)
    except InvalidTransition:
        return wallet.ledger.get(conn, found.id)  # settled the other way already: keep it
    if not moved.replayed:
        record_serial(conn, found.id, result.serial, result.status)
    return moved


def _pending_bills(conn: Connection, cutoff: Any) -> list[tuple[str, str, dict[str, Any]]]:
    rows = conn.execute(
        select(movements.c.ref, movements.c.kind, movements.c.meta)
        .where(
            movements.c.kind.in_([Kind.BILL.value, Kind.BANK_TRANSFER.value]),
            movements.c.state == State.PENDING.value,
        )
        .where(movements.c.created_at <= cutoff)
        .order_by(movements.c.id)
        .limit(500)
    )
    return [(r[0], r[1], dict(r[2] or {})) for r in rows]
