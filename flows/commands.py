"""Commands a flow asks the engine to run against the wallet core. Plain data."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date


@dataclass(frozen=True, slots=True)
class LookupPhone:
    """value: the customer id registered with ``phone``, or None."""

    phone: str


@dataclass(frozen=True, slots=True)
class EmailTaken:
    """value: True when another customer uses ``email``."""

    email: str


@dataclass(frozen=True, slots=True)
class RequestOtp:
    """Issue an OTP and send it to ``phone`` (WhatsApp, SMS fallback; console in dev).
    value: {"expires_at", "left_today"}; errors: otp_blocked, otp_rate_limited."""

    phone: str
    purpose: str


@dataclass(frozen=True, slots=True)
class VerifyOtp:
    """errors: otp_invalid, otp_expired, otp_blocked, otp_not_requested."""

    phone: str
    purpose: str
    code: str


@dataclass(frozen=True, slots=True)
class Register:
    """Create the Regular customer and link this chat to them. value: customer id."""

    phone: str
    first_name: str
    last_name: str
    birth_date: date
    email: str
    language: str
    pin_hash: str


@dataclass(frozen=True, slots=True)
class LinkChat:
    """Link this chat to ``customer_id`` (after OTP and PIN, or a PIN reset)."""

    customer_id: int


@dataclass(frozen=True, slots=True)
class SetPin:
    """Store a new PIN hash. ``reset``: after an OTP, unlocks a PIN-locked customer."""

    customer_id: int
    pin_hash: str
    reset: bool


@dataclass(frozen=True, slots=True)
class GetBalance:
    customer_id: int


@dataclass(frozen=True, slots=True)
class GetHistory:
    customer_id: int
    limit: int
    offset: int


@dataclass(frozen=True, slots=True)
class GetMovement:
    customer_id: int
    ref: str


@dataclass(frozen=True, slots=True)
class GetProfile:
    customer_id: int


@dataclass(frozen=True, slots=True)
class SetLanguage:
    language: str


@dataclass(frozen=True, slots=True)
class OpenSupportRequest:
    kind: str  # lost_phone | unregister | agent
    note: str = ""


@dataclass(frozen=True, slots=True)
class FindRecipient:
    """value: {"customer_id", "name" (masked), "phone" (masked)} or None."""

    phone: str


@dataclass(frozen=True, slots=True)
class RecentRecipients:
    """value: list of {"phone", "name"} the customer sent money to lately."""

    customer_id: int


@dataclass(frozen=True, slots=True)
class Transfer:
    """Wallet to wallet, posted at once; the recipient is told on their own chats.
    value: receipt dict; errors: insufficient_funds, tier_not_allowed, ..."""

    customer_id: int
    recipient_id: int
    amount: int
    fee: int
    note: str
    key: str


@dataclass(frozen=True, slots=True)
class GetTopupInfo:
    """value: {"banks": [{"name", "va"}], "minimarts": [...], "min_token": int}."""

    customer_id: int


@dataclass(frozen=True, slots=True)
class IssueToken:
    """A minimart token. value: {"code", "amount", "fee", "expires_at", "ref"}."""

    purpose: str  # topup | cashout
    customer_id: int
    amount: int
    key: str


@dataclass(frozen=True, slots=True)
class ListProducts:
    """value: [{"code", "name", "price", "admin_fee", "postpaid"}] for a category."""

    category: str
    operator: str = ""


@dataclass(frozen=True, slots=True)
class BillInquiry:
    """External (the biller, outside the transaction). value: {"name", "amount",
    "admin_fee", "period", "total"}; error: biller_error (detail reason: not_found…)."""

    product: str
    customer_no: str
    external: bool = True


@dataclass(frozen=True, slots=True)
class HoldBill:
    """Hold amount + admin fee for a bill. value: {"movement_id", "ref"}."""

    customer_id: int
    product: str
    customer_no: str
    amount: int
    admin_fee: int
    key: str
    description: str


@dataclass(frozen=True, slots=True)
class CallBiller:
    """External: pay the biller with our reference as its idempotency key.
    value: {"status": success|failed|pending, "serial", "message"}."""

    ref: str
    product: str
    customer_no: str
    amount: int
    external: bool = True


@dataclass(frozen=True, slots=True)
class SettleBill:
    """Post (success) or void (failed) the hold; pending leaves it for the callback or
    reconciliation. value: {"state", "ref", "at", "receipt"}."""

    movement_id: int
    status: str
    serial: str | None


@dataclass(frozen=True, slots=True)
class AccountInquiry:
    """External: the bank account holder's name. value: {"name"}; error: not_found."""

    bank_code: str
    account_no: str
    external: bool = True


@dataclass(frozen=True, slots=True)
class HoldBankTransfer:
    """Hold amount + fee for a transfer to a bank. value: {"movement_id", "ref"}."""

    customer_id: int
    bank_code: str
    account_no: str
    account_name: str
    amount: int
    fee: int
    key: str


@dataclass(frozen=True, slots=True)
class CallDisbursement:
    """External: send the money to the bank. value: {"status", "serial"}."""

    ref: str
    bank_code: str
    account_no: str
    amount: int
    external: bool = True


@dataclass(frozen=True, slots=True)
class SettleBankTransfer:
    movement_id: int
    status: str
    serial: str | None


@dataclass(frozen=True, slots=True)
class ListBanks:
    """value: [{"code", "name"}] from config."""


@dataclass(frozen=True, slots=True)
class DecodeQr:
    """External: read QR codes from a stored photo. value: [payload text, ...]."""

    media_ref: str
    external: bool = True


@dataclass(frozen=True, slots=True)
class PayMerchant:
    """Pay a QRIS merchant (posted at once). value: {"ref", "at", "receipt"}."""

    customer_id: int
    nmid: str
    merchant_name: str
    city: str
    amount: int
    tip: int
    key: str
