"""An HTTP disbursement adapter (a Flip/Xendit-style REST API).

Every request is signed (``X-Signature``: HMAC-SHA256 of the body with the API key) and a
payout carries our movement reference as its ``Idempotency-Key``, so a retried request
returns the payout already made instead of paying twice.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from typing import Any

import aiohttp

from wallet.billers import PayResult
from wallet.disbursement import DisbursementError

_STATUS = {"COMPLETED": "success", "PENDING": "pending", "FAILED": "failed"}


def signature(key: bytes, body: bytes) -> str:
    return hmac.new(key, body, hashlib.sha256).hexdigest()


class HttpDisbursement:
    def __init__(
        self, url: str, api_key: str, session: aiohttp.ClientSession | None = None
    ) -> None:
        self.url = url.rstrip("/")
        self.key = api_key.encode()
        self._session = session

    async def _call(
        self,
        method: str,
        path: str,
        payload: dict[str, Any] | None = None,
        idempotency_key: str | None = None,
    ) -> tuple[int, dict[str, Any]]:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30))
        body = json.dumps(payload or {}, separators=(",", ":")).encode()
        headers = {"Content-Type": "application/json", "X-Signature": signature(self.key, body)}
        if idempotency_key:
            headers["Idempotency-Key"] = idempotency_key
        async with self._session.request(
            method, self.url + path, data=body if payload is not None else None, headers=headers
        ) as resp:
            data = await resp.json(content_type=None)
            return resp.status, data if isinstance(data, dict) else {}

    async def inquiry(self, bank_code: str, account_no: str) -> str:
        status, data = await self._call(
            "POST", "/v1/account-inquiry", {"bank_code": bank_code, "account_number": account_no}
        )
        if status == 404:
            raise DisbursementError("not_found", "account not found")
        if status != 200 or not data.get("account_name"):
            raise DisbursementError("unavailable", f"inquiry answered {status}")
        return str(data["account_name"])

    async def send(self, ref: str, bank_code: str, account_no: str, amount: int) -> PayResult:
        status, data = await self._call(
            "POST",
            "/v1/disbursements",
            {
                "reference": ref,
                "bank_code": bank_code,
                "account_number": account_no,
                "amount": amount,
            },
            idempotency_key=ref,
        )
        return _result(status, data)

    async def status(self, ref: str) -> PayResult:
        status, data = await self._call("GET", f"/v1/disbursements/{ref}")
        if status == 404:
            return PayResult("failed", message="unknown reference")
        return _result(status, data)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()


def _result(status: int, data: dict[str, Any]) -> PayResult:
    if status >= 500:
        return PayResult("pending", message=f"provider answered {status}")  # ask again later
    outcome = _STATUS.get(str(data.get("status", "")).upper())
    if outcome is None:
        return PayResult("failed", message=str(data.get("message", f"answered {status}")))
    return PayResult(outcome, str(data.get("bank_ref") or "") or None)  # type: ignore[arg-type]
