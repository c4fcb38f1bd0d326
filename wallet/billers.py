"""Bill payments (PPOB): the catalogue, the biller port, and the deterministic sandbox.

A purchase is: inquiry (postpaid: the bill; prepaid: the price) → hold → pay with our
reference as the biller's idempotency key → success posts the hold and delivers the serial
number or token; failure voids it; pending keeps the hold until the biller's callback or
a status check settles it.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Literal, Protocol

from pydantic import BaseModel
from sqlalchemy import Connection, select, update

from storage.schema import movements
from wallet.errors import WalletError

PayStatus = Literal["success", "failed", "pending"]


class BillerError(WalletError):
    code = "biller_error"

    def __init__(self, reason: str, message: str = "") -> None:
        super().__init__(message or reason)
        self.reason = reason  # not_found | unavailable | invalid_number


class Product(BaseModel):
    """One thing a customer can buy or pay, from config."""

    code: str  # our SKU, also the aggregator's buyer_sku_code
    category: str  # pulsa | data | pln_token | pln_bill | pdam | internet_tv | bpjs
    name: str
    operator: str = ""  # pulsa/data: telkomsel, indosat, xl, axis, tri, smartfren, byu
    price: int = 0  # prepaid: what the customer pays (0 for postpaid: from the inquiry)
    admin_fee: int = 0
    postpaid: bool = False


@dataclass(frozen=True, slots=True)
class Bill:
    product: str
    customer_no: str
    name: str  # the bill's holder (postpaid), the meter's owner (PLN), or the product
    amount: int  # what the biller is paid
    admin_fee: int
    period: str = ""
    details: dict[str, str] = field(default_factory=dict)

    @property
    def total(self) -> int:
        return self.amount + self.admin_fee


@dataclass(frozen=True, slots=True)
class PayResult:
    status: PayStatus
    serial: str | None = None  # SN, or the 20-digit PLN token
    message: str = ""


class Biller(Protocol):
    """The biller port. ``pay`` and ``status`` are idempotent on ``ref_id``."""

    async def inquiry(self, product: Product, customer_no: str) -> Bill: ...

    async def pay(
        self, ref_id: str, product: Product, customer_no: str, amount: int
    ) -> PayResult: ...

    async def status(self, ref_id: str, product: Product, customer_no: str) -> PayResult: ...


# Operator prefixes (after 08).
_OPERATORS = {
    "telkomsel": ("811", "812", "813", "821", "822", "823", "852", "853"),
    "byu": ("851",),
    "indosat": ("814", "815", "816", "855", "856", "857", "858"),
    "xl": ("817", "818", "819", "859", "877", "878"),
    "axis": ("831", "832", "833", "838"),
    "tri": ("895", "896", "897", "898", "899"),
    "smartfren": ("881", "882", "883", "884", "885", "886", "887", "888", "889"),
}


def operator_of(phone_e164: str) -> str | None:
    """``+6281234…`` → ``telkomsel``."""
    national = phone_e164.removeprefix("+62")
    for operator, prefixes in _OPERATORS.items():
        if national[:3] in prefixes:
            return operator
    return None


class SandboxBiller:
    """Deterministic, like aggregators' sandboxes. By the customer number's last digits:
    ``…1111`` fails, ``…2222`` goes pending then succeeds, ``…3333`` goes pending then
    fails, ``…4040`` is not found at inquiry; anything else succeeds at once."""

    def __init__(self) -> None:
        self.paid: dict[str, PayResult] = {}
        self.checks: dict[str, int] = {}
        self.pay_calls: list[str] = []

    async def inquiry(self, product: Product, customer_no: str) -> Bill:
        if customer_no.endswith("4040"):
            raise BillerError("not_found", "customer number not found")
        if not product.postpaid:
            name = "PELANGGAN PLN SANDBOX" if product.category == "pln_token" else product.name
            return Bill(product.code, customer_no, name, product.price, product.admin_fee)
        seed = int(hashlib.sha256(f"{product.code}{customer_no}".encode()).hexdigest()[:6], 16)
        amount = 50_000 + (seed % 40) * 5_000
        return Bill(
            product.code,
            customer_no,
            "BUDI SANTOSO",
            amount,
            product.admin_fee,
            period="NOV 2026",
            details={"tarif": "R1/1300VA"},
        )

    async def pay(self, ref_id: str, product: Product, customer_no: str, amount: int) -> PayResult:
        self.pay_calls.append(ref_id)
        if ref_id in self.paid:
            return await self.status(ref_id, product, customer_no)
        if customer_no.endswith("1111"):
            result = PayResult("failed", message="transaksi gagal di biller")
        elif customer_no.endswith(("2222", "3333")):
            result = PayResult("pending", message="sedang diproses biller")
        else:
            result = PayResult("success", _serial(ref_id, product))
        self.paid[ref_id] = result
        return result

    async def status(self, ref_id: str, product: Product, customer_no: str) -> PayResult:
        if ref_id not in self.paid:
            return PayResult("failed", message="unknown ref_id")
        result = self.paid[ref_id]
        if result.status == "pending":
            self.checks[ref_id] = self.checks.get(ref_id, 0) + 1
            if customer_no.endswith("2222"):
                result = PayResult("success", _serial(ref_id, product))
            else:
                result = PayResult("failed", message="gagal setelah diproses")
            self.paid[ref_id] = result
        return result


def _serial(ref_id: str, product: Product) -> str:
    digest = hashlib.sha256(ref_id.encode()).hexdigest()
    digits = "".join(str(int(c, 16) % 10) for c in digest)
    if product.category == "pln_token":
        return "-".join(digits[i : i + 4] for i in range(0, 20, 4))
    return f"SN{digits[:16]}"


DEFAULT_PRODUCTS: list[dict[str, object]] = [
    *(
        {
            "code": f"{op}{d // 1000}",
            "category": "pulsa",
            "operator": op,
            "name": f"Pulsa {d // 1000}rb",
            "price": d + 1_500,
        }
        for op in _OPERATORS
        for d in (10_000, 25_000, 50_000, 100_000)
    ),
    *(
        {
            "code": f"{op}data{gb}",
            "category": "data",
            "operator": op,
            "name": f"Paket data {gb} GB 30 hari",
            "price": price,
        }
        for op in _OPERATORS
        for gb, price in ((5, 35_000), (12, 65_000), (25, 100_000))
    ),
    *(
        {
            "code": f"pln{d // 1000}",
            "category": "pln_token",
            "name": f"Token PLN {d // 1000}rb",
            "price": d + 2_500,
        }
        for d in (20_000, 50_000, 100_000, 200_000, 500_000, 1_000_000)
    ),
    {
        "code": "plnpasca",
        "category": "pln_bill",
        "name": "Tagihan PLN",
        "admin_fee": 2_500,
        "postpaid": True,
    },
    {"code": "pdam", "category": "pdam", "name": "Air PDAM", "admin_fee": 2_500, "postpaid": True},
    {
        "code": "indihome",
        "category": "internet_tv",
        "name": "IndiHome",
        "admin_fee": 2_500,
        "postpaid": True,
    },
    {
        "code": "firstmedia",
        "category": "internet_tv",
        "name": "First Media",
        "admin_fee": 2_500,
        "postpaid": True,
    },
    {
        "code": "bpjsks",
        "category": "bpjs",
        "name": "BPJS Kesehatan",
        "admin_fee": 2_500,
        "postpaid": True,
    },
]


def record_serial(conn: Connection, movement_id: int, serial: str | None, status: str) -> None:
    """Keep what the biller answered (the SN or PLN token) with the movement."""
    row = conn.execute(select(movements.c.meta).where(movements.c.id == movement_id)).first()
    meta = dict(row[0] or {}) if row is not None else {}
    meta.update({"biller_status": status, **({"serial": serial} if serial else {})})
    conn.execute(update(movements).where(movements.c.id == movement_id).values(meta=meta))


def bill_product(products: list[Product], code: str) -> Product:
    for product in products:
        if product.code == code:
            return product
    raise BillerError("not_found", f"unknown product {code}")
