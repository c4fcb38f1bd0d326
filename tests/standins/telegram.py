"""A stand-in Telegram Bot API server on loopback: records what the bot sends."""

from __future__ import annotations

import itertools
import json
import time
from typing import Any

from aiohttp import web

BOT_USER = {
    "id": 777000,
    "is_bot": True,
    "first_name": "KasPro",
    "username": "kaspro_bot",
    "can_join_groups": False,
    "can_read_all_group_messages": False,
    "supports_inline_queries": False,
}


class FakeTelegram:
    def __init__(self, token: str) -> None:
        self.token = token
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.files: dict[str, bytes] = {}
        self._ids = itertools.count(1000)
        self.fail_next: int = 0
        self.failed: list[tuple[str, dict[str, Any]]] = []

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post(f"/bot{self.token}/{{method}}", self.method)
        app.router.add_get(f"/file/bot{self.token}/{{path:.*}}", self.download)
        return app

    def sent(self, method: str = "sendMessage", chat_id: int | None = None) -> list[dict[str, Any]]:
        return [
            p
            for m, p in self.calls
            if m == method and (chat_id is None or int(p.get("chat_id", 0)) == chat_id)
        ]

    def texts(self, chat_id: int) -> list[str]:
        return [str(p.get("text", "")) for p in self.sent("sendMessage", chat_id)]

    async def method(self, request: web.Request) -> web.Response:
        name = request.match_info["method"]
        if request.content_type == "application/json":
            params = await request.json()
        else:
            params = {}
            for k, v in (await request.post()).items():
                try:
                    params[k] = json.loads(v) if isinstance(v, str) else v
                except ValueError:
                    params[k] = v
        if self.fail_next and name == "sendMessage":
            self.fail_next -= 1
            self.failed.append((name, params))
            return web.json_response(
                {"ok": False, "error_code": 502, "description": "Bad Gateway"}, status=502
            )
        self.calls.append((name, params))
        return web.json_response({"ok": True, "result": self._result(name, params)})

    def _result(self, name: str, p: dict[str, Any]) -> Any:
        if name == "getMe":
            return BOT_USER
        if name in ("sendMessage", "sendPhoto"):
            msg: dict[str, Any] = {
                "message_id": next(self._ids),
                "date": int(time.time()),
                "chat": {"id": int(p["chat_id"]), "type": "private"},
                "from": BOT_USER,
            }
            if name == "sendMessage":
                msg["text"] = p.get("text", "")
            else:
                msg["photo"] = [{"file_id": "x", "file_unique_id": "x", "width": 1, "height": 1}]
            return msg
        if name == "getFile":
            file_id = str(p["file_id"])
            data = self.files.get(file_id, b"")
            return {
                "file_id": file_id,
                "file_unique_id": file_id,
                "file_size": len(data),
                "file_path": f"photos/{file_id}.jpg",
            }
        if name == "getUpdates":
            return []
        return True

    async def download(self, request: web.Request) -> web.Response:
        file_id = request.match_info["path"].split("/")[-1].removesuffix(".jpg")
        if file_id not in self.files:
            raise web.HTTPNotFound()
        return web.Response(body=self.files[file_id], content_type="image/jpeg")


_update_ids = itertools.count(1)


def text_update(
    chat_id: int, text: str, *, update_id: int | None = None, first_name: str = "Siti"
) -> dict[str, Any]:
    uid = update_id if update_id is not None else next(_update_ids)
    return {
        "update_id": uid,
        "message": {
            "message_id": uid * 10,
            "date": int(time.time()),
            "text": text,
            "chat": {"id": chat_id, "type": "private", "first_name": first_name},
            "from": {"id": chat_id, "is_bot": False, "first_name": first_name},
        },
    }


def contact_update(chat_id: int, phone: str, *, own: bool = True) -> dict[str, Any]:
    uid = next(_update_ids)
    return {
        "update_id": uid,
        "message": {
            "message_id": uid * 10,
            "date": int(time.time()),
            "contact": {
                "phone_number": phone,
                "first_name": "Siti",
                "user_id": chat_id if own else chat_id + 1,
            },
            "chat": {"id": chat_id, "type": "private", "first_name": "Siti"},
            "from": {"id": chat_id, "is_bot": False, "first_name": "Siti"},
        },
    }


def photo_update(chat_id: int, file_id: str, size: int) -> dict[str, Any]:
    uid = next(_update_ids)
    return {
        "update_id": uid,
        "message": {
            "message_id": uid * 10,
            "date": int(time.time()),
            "photo": [
                {
                    "file_id": file_id,
                    "file_unique_id": file_id,
                    "width": 800,
                    "height": 600,
                    "file_size": size,
                }
            ],
            "chat": {"id": chat_id, "type": "private", "first_name": "Siti"},
            "from": {"id": chat_id, "is_bot": False, "first_name": "Siti"},
        },
    }


def callback_update(chat_id: int, data: str) -> dict[str, Any]:
    uid = next(_update_ids)
    return {
        "update_id": uid,
        "callback_query": {
            "id": f"cb{uid}",
            "chat_instance": "ci",
            "data": data,
            "from": {"id": chat_id, "is_bot": False, "first_name": "Siti"},
            "message": {
                "message_id": uid * 10,
                "date": int(time.time()),
                "chat": {"id": chat_id, "type": "private"},
                "text": "menu",
            },
        },
    }
