"""Transfers to bank accounts: the disbursement port and its deterministic sandbox.

Account-name inquiry → hold → send with our reference as the provider's idempotency key →
success posts, failure voids, pending waits for the provider's callback or a status check.
"""

from __future__ import annotations

import hashlib
from typing import Protocol

from wallet.billers import BillerError, PayResult


class DisbursementError(BillerError):
    code = "disbursement_error"


class Disbursement(Protocol):
    async def inquiry(self, bank_code: str, account_no: str) -> str:
        """The account holder's name; DisbursementError("not_found") when unknown."""
        ...

    async def send(self, ref: str, bank_code: str, account_no: str, amount: int) -> PayResult: ...

    async def status(self, ref: str) -> PayResult: ...


_NAMES = ("BUDI SANTOSO", "SITI RAHAYU", "AGUS PRASETYO", "DEWI LESTARI", "RINA WATI")


class SandboxDisbursement:
    """By the account number's last digits: ``…4040`` unknown, ``…1111`` fails, ``…2222``
    pending then success, ``…3333`` pending then failed; anything else succeeds."""

    def __init__(self) -> None:
        self.sent: dict[str, tuple[str, PayResult]] = {}

    async def inquiry(self, bank_code: str, account_no: str) -> str:
        if account_no.endswith("4040"):
            raise DisbursementError("not_found", "account not found")
        seed = int(hashlib.sha256(f"{bank_code}{account_no}".encode()).hexdigest()[:4], 16)
        return _NAMES[seed % len(_NAMES)]

    async def send(self, ref: str, bank_code: str, account_no: str, amount: int) -> PayResult:
        if ref in self.sent:
            return await self.status(ref)
        if account_no.endswith("1111"):
            result = PayResult("failed", message="rejected by the bank")
        elif account_no.endswith(("2222", "3333")):
            result = PayResult("pending", message="queued at the bank")
        else:
            result = PayResult("success", f"TRF{ref[-8:]}")
        self.sent[ref] = (account_no, result)
        return result

    async def status(self, ref: str) -> PayResult:
        if ref not in self.sent:
            return PayResult("failed", message="unknown reference")
        account_no, result = self.sent[ref]
        if result.status == "pending":
            result = (PayResult("success", f"TRF{ref[-8:]}") if account_no.endswith("2222")
                      else PayResult("failed", message="returned by the bank"))
            self.sent[ref] = (account_no, result)
        return result
