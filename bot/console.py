"""The terminal chat: the embedded default (``kaspro chat``).

SQLite at the default path (migrated automatically), sandbox providers, and OTPs shown
inline. Reads stdin line by line, so it can be scripted: ``/photo PATH``,
``/contact PHONE``, ``/quit``. Buttons appear as numbered options; type the number or
the label.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import sys
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TextIO

from sqlalchemy.engine import make_url

from bot.engine import Engine, Inbound
from storage.db import Database
from storage.migrate import upgrade
from wallet.config import Settings
from wallet.masking import mask_phone
from wallet.service import Wallet

CHANNEL = "console"


class ConsoleChannel:
    def __init__(self, out: TextIO) -> None:
        self.out = out

    async def send(self, chat_id: str, payload: Mapping[str, Any]) -> None:
        if payload.get("type") == "delete":
            self.out.write("      (your PIN message was removed from the chat)\n")
            return
        for line in str(payload.get("text", "")).splitlines() or [""]:
            self.out.write(f"bot > {line}\n")
        for n, button in enumerate(payload.get("buttons") or [], start=1):
            self.out.write(f"      {n}. {button['label']}\n")
        if payload.get("share_phone"):
            self.out.write("      (type /contact 08… to share your number)\n")
        self.out.flush()


class ConsoleOtpSender:
    """Development OTP delivery: shown inline instead of sent by WhatsApp/SMS."""

    def __init__(self, out: TextIO) -> None:
        self.out = out

    async def send_otp(self, phone: str, text: str, code: str) -> None:
        self.out.write(f"[SMS → {mask_phone(phone)}] {text}\n")
        self.out.flush()


async def chat(
    settings: Settings,
    *,
    user: str = "local",
    lang: str | None = None,
    stdin: TextIO = sys.stdin,
    stdout: TextIO = sys.stdout,
) -> None:
    await upgrade(settings.database_url)
    db = Database.from_url(settings.database_url, pool_size=4)
    wallet = Wallet(db, settings, secret_key=_dev_secret(settings))
    engine = Engine(
        wallet,
        idle_minutes=settings.idle_timeout_minutes,
        channels={CHANNEL: ConsoleChannel(stdout)},
        otp_sender=ConsoleOtpSender(stdout),
    )
    if lang:
        await engine.set_language(CHANNEL, user, lang)
    session = uuid.uuid4().hex[:8]
    sweeper = asyncio.create_task(_sweep(engine))
    stdout.write("KasPro chat — type anything to start, /quit to leave.\n")
    stdout.flush()
    try:
        n = 0
        while True:
            if stdin.isatty():
                stdout.write("you > ")
                stdout.flush()
            line = await asyncio.to_thread(stdin.readline)
            if not line:
                break
            line = line.rstrip("\n")
            if not line.strip():
                continue
            if line.strip() == "/quit":
                break
            n += 1
            msg = _inbound(line, user, f"{session}-{n}")
            if msg is None:
                stdout.write("      (use /photo PATH, /contact PHONE or /quit)\n")
                continue
            await engine.handle(msg)
    finally:
        sweeper.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await sweeper
        await db.dispose()


def _dev_secret(settings: Settings) -> bytes | None:
    """The terminal chat is development: without KASPRO_SECRET_KEY, keep a random key in a
    private file beside the SQLite database, so OTPs survive a restart of the chat."""
    if settings.secret_key is not None or not settings.database_url.startswith("sqlite"):
        return None
    db_path = Path(make_url(settings.database_url).database or "kaspro.db")
    key_file = db_path.with_name(db_path.name + ".dev-secret")
    if not key_file.exists():
        fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_hex(32))
    return key_file.read_text().strip().encode()


def _inbound(line: str, user: str, message_id: str) -> Inbound | None:
    if line.startswith("/contact "):
        return Inbound(CHANNEL, user, message_id, contact=line.removeprefix("/contact ").strip())
    if line.startswith("/photo "):
        return Inbound(CHANNEL, user, message_id, photo_ref=line.removeprefix("/photo ").strip())
    if line.startswith("/") and line.split()[0] not in (
        "/start",
        "/menu",
        "/batal",
        "/cancel",
        "/help",
        "/bantuan",
    ):
        return None
    return Inbound(CHANNEL, user, message_id, text=line)


async def _sweep(engine: Engine) -> None:
    while True:
        await asyncio.sleep(15)
        await engine.sweep_idle()
