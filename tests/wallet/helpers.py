from __future__ import annotations

import itertools
from datetime import date

from wallet.customers import NewCustomer
from wallet.model import (
    CustomerParty,
    Kind,
    Movement,
    MoveMoney,
    SystemKind,
    SystemParty,
    Tier,
)
from wallet.service import Wallet

VA_BCA = SystemParty(SystemKind.TOPUP_FLOAT, "va:014")
MERCHANT = SystemParty(SystemKind.MERCHANT, "ID1020000000001")
BILLER = SystemParty(SystemKind.BILLER_SETTLEMENT)

_phones = itertools.count(10_000_000)
_keys = itertools.count(1)


def next_phone() -> str:
    return f"0812{next(_phones):08d}"


def key(prefix: str = "k") -> str:
    return f"{prefix}-{next(_keys)}"


async def new_customer(
    wallet: Wallet,
    *,
    tier: Tier = Tier.REGULAR,
    pin: str | None = None,
    birth_date: date | None = date(1990, 8, 17),
) -> int:
    phone = next_phone()
    c = await wallet.register(
        NewCustomer(phone, "Budi", "Santoso", birth_date, f"budi{phone}@example.com"), pin=pin
    )
    if tier is Tier.PREMIUM:
        await wallet.set_tier(c.id, Tier.PREMIUM, actor="test:kyc")
    return c.id


async def topup(wallet: Wallet, customer_id: int, amount: int, *, hold: bool = False) -> Movement:
    return await wallet.move(
        MoveMoney(
            key=key("topup"),
            kind=Kind.TOPUP,
            source=VA_BCA,
            destination=CustomerParty(customer_id),
            amount=amount,
            hold=hold,
            actor="bank:014",
        )
    )


async def send(
    wallet: Wallet,
    src: int,
    dst: int,
    amount: int,
    *,
    fee: int = 0,
    hold: bool = False,
    k: str | None = None,
) -> Movement:
    return await wallet.move(
        MoveMoney(
            key=k or key("p2p"),
            kind=Kind.TRANSFER,
            source=CustomerParty(src),
            destination=CustomerParty(dst),
            amount=amount,
            fee=fee,
            hold=hold,
            actor=f"customer:{src}",
        )
    )


async def pay_merchant(wallet: Wallet, src: int, amount: int) -> Movement:
    return await wallet.move(
        MoveMoney(
            key=key("qris"),
            kind=Kind.QRIS,
            source=CustomerParty(src),
            destination=MERCHANT,
            amount=amount,
            actor=f"customer:{src}",
        )
    )
