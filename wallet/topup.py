"""Top-ups by bank virtual account: VA number = the bank's prefix + the phone's national
digits. The bank's notification is idempotent on its reference."""

from __future__ import annotations

from sqlalchemy import Connection

from wallet import customers as cust
from wallet.config import BankSettings, Settings
from wallet.errors import CustomerNotFound, ValidationFailed
from wallet.ledger import Ledger
from wallet.model import CustomerParty, Kind, Movement, MoveMoney, SystemKind, SystemParty


def national_digits(phone: str) -> str:
    """``+6281234567890`` → ``81234567890``."""
    return phone.removeprefix("+62")


def va_number(bank: BankSettings, phone: str) -> str:
    return bank.va_prefix + national_digits(phone)


def bank_by_code(settings: Settings, code: str) -> BankSettings:
    for bank in settings.money.banks:
        if bank.code == code:
            return bank
    raise ValidationFailed(f"unknown bank {code}")


def va_topup_in(
    conn: Connection,
    settings: Settings,
    ledger: Ledger,
    *,
    bank_code: str,
    va: str,
    amount: int,
    reference: str,
) -> Movement:
    """Credit the customer behind ``va``; exactly once per (bank, reference)."""
    bank = bank_by_code(settings, bank_code)
    if not va.startswith(bank.va_prefix) or not va.isdigit():
        raise CustomerNotFound(va)
    customer = cust.customer_by_phone(conn, "+62" + va.removeprefix(bank.va_prefix))
    if customer is None:
        raise CustomerNotFound(va)
    return ledger.move(
        conn,
        MoveMoney(
            key=f"va:{bank.code}:{reference}",
            kind=Kind.TOPUP,
            source=SystemParty(SystemKind.TOPUP_FLOAT, f"va:{bank.code}"),
            destination=CustomerParty(customer.id),
            amount=amount,
            actor=f"bank:{bank.code}",
            description=f"Isi saldo via VA {bank.name}",
            meta={"bank_ref": reference[:80]},
        ),
    )
