"""A stand-in Digiflazz-style aggregator on loopback (signed requests, ref_id idempotency,
rc 00/02/03), behaving like the sandbox by customer number."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from bot.providers.digiflazz import sign


class FakeAggregator:
    def __init__(self, username: str, api_key: str) -> None:
        self.username = username
        self.api_key = api_key
        self.requests: list[dict[str, Any]] = []
        self.transactions: dict[str, dict[str, Any]] = {}

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/v1/transaction", self.transaction)
        return app

    async def transaction(self, request: web.Request) -> web.Response:
        p = await request.json()
        self.requests.append(p)
        if p.get("sign") != sign(self.username, self.api_key, p.get("ref_id", "")):
            return web.json_response({"data": {"rc": "41", "message": "Signature invalid"}})
        ref, no, cmd = p["ref_id"], p["customer_no"], p.get("commands")
        base = {"ref_id": ref, "customer_no": no, "buyer_sku_code": p["buyer_sku_code"]}
        if cmd == "inq-pasca":
            if no.endswith("4040"):
                return web.json_response({"data": {**base, "rc": "60", "message": "not found"}})
            return web.json_response(
                {
                    "data": {
                        **base,
                        "rc": "00",
                        "customer_name": "BUDI",
                        "price": 125000,
                        "admin": 2500,
                        "desc": {"detail": [{"periode": "202611"}]},
                    }
                }
            )
        tx = self.transactions.get(ref)
        if tx is None:  # first time: pay
            if no.endswith("1111"):
                tx = {"rc": "02", "status": "Gagal", "message": "Transaksi Gagal"}
            elif no.endswith(("2222", "3333")):
                tx = {"rc": "03", "status": "Pending", "message": "Transaksi Pending"}
            else:
                tx = {"rc": "00", "status": "Sukses", "sn": f"SN-{ref[-6:]}"}
            self.transactions[ref] = tx
        return web.json_response({"data": {**base, **tx}})

    def finish(self, ref: str, ok: bool) -> dict[str, Any]:
        """The aggregator settles a pending transaction; returns its webhook body."""
        tx = (
            {"rc": "00", "status": "Sukses", "sn": f"SN-{ref[-6:]}"}
            if ok
            else {"rc": "02", "status": "Gagal", "message": "Gagal"}
        )
        self.transactions[ref] = tx
        return {"data": {"ref_id": ref, **tx}}
