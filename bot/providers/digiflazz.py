"""An HTTP biller adapter for a Digiflazz-style PPOB aggregator.

Requests are signed with md5(username + api_key + ref_id); ``ref_id`` (our movement
reference) makes every payment idempotent at the aggregator, so a repeat of the same
request returns the transaction's current state instead of paying twice. Response codes:
rc 00 success, 03 pending, anything else failed. The aggregator's webhook is signed with
HMAC-SHA1 of the raw body (``X-Hub-Signature: sha1=<hex>``).
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Any

import aiohttp

from wallet.billers import Bill, BillerError, PayResult, Product

SUCCESS, PENDING = "00", "03"


def sign(username: str, api_key: str, ref_id: str) -> str:
    return hashlib.md5(f"{username}{api_key}{ref_id}".encode()).hexdigest()  # noqa: S324


def webhook_valid(secret: bytes, body: bytes, header: str) -> bool:
    expected = "sha1=" + hmac.new(secret, body, hashlib.sha1).hexdigest()
    return bool(header) and hmac.compare_digest(header, expected)


def result_of(data: dict[str, Any]) -> PayResult:
    rc = str(data.get("rc", ""))
    sn = str(data.get("sn") or "") or None
    message = str(data.get("message", ""))
    if rc == SUCCESS:
        return PayResult("success", sn, message)
    if rc == PENDING:
        return PayResult("pending", None, message)
    return PayResult("failed", None, message)


class DigiflazzBiller:
    def __init__(
        self, url: str, username: str, api_key: str, session: aiohttp.ClientSession | None = None
    ) -> None:
        self.url = url.rstrip("/")
        self.username = username
        self.api_key = api_key
        self._session = session

    async def _post(self, payload: dict[str, Any]) -> dict[str, Any]:
        session = self._session
        if session is None:
            session = self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30))
        async with session.post(f"{self.url}/v1/transaction", json=payload) as resp:
            body = await resp.json(content_type=None)
        data = body.get("data") if isinstance(body, dict) else None
        if not isinstance(data, dict):
            raise BillerError("unavailable", "unexpected aggregator answer")
        return data

    def _payload(
        self, ref_id: str, product: Product, customer_no: str, command: str | None = None
    ) -> dict[str, Any]:
        payload = {
            "username": self.username,
            "buyer_sku_code": product.code,
            "customer_no": customer_no,
            "ref_id": ref_id,
            "sign": sign(self.username, self.api_key, ref_id),
        }
        if command:
            payload["commands"] = command
        return payload

    async def inquiry(self, product: Product, customer_no: str) -> Bill:
        if not product.postpaid:
            return Bill(product.code, customer_no, product.name, product.price, product.admin_fee)
        ref_id = "inq-" + hashlib.sha256(f"{product.code}{customer_no}".encode()).hexdigest()[:20]
        data = await self._post(self._payload(ref_id, product, customer_no, "inq-pasca"))
        if str(data.get("rc")) != SUCCESS:
            raise BillerError("not_found", str(data.get("message", "")))
        desc = data.get("desc") or {}
        period = ""
        if isinstance(desc, dict) and isinstance(desc.get("detail"), list) and desc["detail"]:
            period = str(desc["detail"][0].get("periode", ""))
        return Bill(
            product.code,
            customer_no,
            str(data.get("customer_name", "")),
            int(data.get("price", 0)),
            product.admin_fee,
            period=period,
        )

    async def pay(self, ref_id: str, product: Product, customer_no: str, amount: int) -> PayResult:
        command = "pay-pasca" if product.postpaid else None
        return result_of(await self._post(self._payload(ref_id, product, customer_no, command)))

    async def status(self, ref_id: str, product: Product, customer_no: str) -> PayResult:
        command = "status-pasca" if product.postpaid else None
        return result_of(await self._post(self._payload(ref_id, product, customer_no, command)))

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
