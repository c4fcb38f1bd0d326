"""A stand-in disbursement provider on loopback: signed requests, idempotency keys."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from bot.providers.disbursement_http import signature


class FakeDisbursement:
    def __init__(self, api_key: str) -> None:
        self.key = api_key.encode()
        self.payouts: dict[str, dict[str, Any]] = {}
        self.requests: list[str] = []

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/v1/account-inquiry", self.inquiry)
        app.router.add_post("/v1/disbursements", self.create)
        app.router.add_get("/v1/disbursements/{ref}", self.get)
        return app

    def _signed(self, request: web.Request, body: bytes) -> bool:
        return request.headers.get("X-Signature") == signature(self.key, body)

    async def inquiry(self, request: web.Request) -> web.Response:
        body = await request.read()
        if not self._signed(request, body):
            return web.json_response({"message": "bad signature"}, status=401)
        data = await request.json()
        if str(data["account_number"]).endswith("4040"):
            return web.json_response({"message": "not found"}, status=404)
        return web.json_response({"account_name": "DEWI LESTARI"})

    async def create(self, request: web.Request) -> web.Response:
        body = await request.read()
        if not self._signed(request, body):
            return web.json_response({"message": "bad signature"}, status=401)
        key = request.headers.get("Idempotency-Key", "")
        self.requests.append(key)
        if key in self.payouts:
            return web.json_response(self.payouts[key])
        data = await request.json()
        account = str(data["account_number"])
        status = (
            "FAILED"
            if account.endswith("1111")
            else "PENDING"
            if account.endswith("2222")
            else "COMPLETED"
        )
        payout = {
            "reference": key,
            "status": status,
            "bank_ref": f"TRF-{key[-6:]}" if status == "COMPLETED" else None,
        }
        self.payouts[key] = payout
        return web.json_response(payout, status=201)

    async def get(self, request: web.Request) -> web.Response:
        ref = request.match_info["ref"]
        if not self._signed(request, b"{}") and not self._signed(request, b""):
            return web.json_response({"message": "bad signature"}, status=401)
        if ref not in self.payouts:
            return web.json_response({"message": "not found"}, status=404)
        return web.json_response(self.payouts[ref])

    def complete(self, ref: str) -> None:
        self.payouts[ref] = {"reference": ref, "status": "COMPLETED", "bank_ref": f"TRF-{ref[-6:]}"}
