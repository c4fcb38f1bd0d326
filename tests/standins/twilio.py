"""A stand-in Twilio REST API on loopback: records messages, serves media with auth."""

from __future__ import annotations

import base64
import itertools
from typing import Any

from aiohttp import web


class FakeTwilio:
    def __init__(self, account_sid: str, auth_token: str) -> None:
        self.account_sid = account_sid
        self.auth_token = auth_token
        self.messages: list[dict[str, str]] = []
        self.media: dict[str, tuple[bytes, str]] = {}
        self.media_requests: list[str | None] = []
        self._ids = itertools.count(1)

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post(f"/2010-04-01/Accounts/{self.account_sid}/Messages.json", self.create)
        app.router.add_get("/media/{name}", self.serve_media)
        return app

    def _authorized(self, request: web.Request) -> bool:
        expected = base64.b64encode(f"{self.account_sid}:{self.auth_token}".encode()).decode()
        return request.headers.get("Authorization") == f"Basic {expected}"

    async def create(self, request: web.Request) -> web.Response:
        if not self._authorized(request):
            return web.json_response(
                {"code": 20003, "message": "Authenticate", "status": 401}, status=401
            )
        form = {k: str(v) for k, v in (await request.post()).items()}
        self.messages.append(form)
        sid = f"SM{next(self._ids):032d}"
        body: dict[str, Any] = {
            "sid": sid,
            "account_sid": self.account_sid,
            "to": form.get("To"),
            "from": form.get("From"),
            "body": form.get("Body"),
            "status": "queued",
            "num_media": "0",
            "direction": "outbound-api",
        }
        return web.json_response(body, status=201)

    async def serve_media(self, request: web.Request) -> web.Response:
        self.media_requests.append(request.headers.get("Authorization"))
        if not self._authorized(request):
            raise web.HTTPUnauthorized()
        name = request.match_info["name"]
        if name not in self.media:
            raise web.HTTPNotFound()
        data, ctype = self.media[name]
        return web.Response(body=data, content_type=ctype)

    def to(self, number: str) -> list[dict[str, str]]:
        return [m for m in self.messages if m.get("To") in (number, f"whatsapp:{number}")]
