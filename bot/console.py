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

from sqlalchemy import Connection, select
from sqlalchemy.engine import make_url

from bot.billing import Billing
from bot.engine import Engine, Inbound
from bot.media import IMAGE_TYPES, MediaStore, sniff_image_type
from bot.partners import Partners, signed_request
from flows.parsing import ParseError, parse_amount
from storage.db import Database
from storage.migrate import upgrade
from storage.schema import conversations
from wallet.config import Settings
from wallet.customers import NewCustomer
from wallet.errors import WalletError
from wallet.masking import mask_phone
from wallet.model import Tier
from wallet.service import Wallet
from wallet.topup import bank_by_code, va_number

CHANNEL = "console"


class ConsoleChannel:
    def __init__(self, out: TextIO) -> None:
        self.out = out

    async def send(self, chat_id: str, payload: Mapping[str, Any]) -> None:
        if payload.get("type") == "delete":
            self.out.write("      (your PIN message was removed from the chat)\n")
            return
        if payload.get("type") == "receipt":
            path = await asyncio.to_thread(_save_receipt, payload)
            self.out.write(f"bot > [receipt image: {path}]\n")
            self.out.flush()
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
    media = MediaStore(db, wallet.otp._key)
    # The sandbox plays the bank and the minimart through the same signed callback code
    # the server runs; without KASPRO_PARTNER_SECRET it signs with a throwaway key.
    partner_secret = secrets.token_bytes(32)
    if settings.partner_secret is not None:
        partner_secret = settings.partner_secret.get_secret_value().encode()
    partners = Partners(wallet, engine, secret=partner_secret)
    if lang:
        await engine.set_language(CHANNEL, user, lang)
    session = uuid.uuid4().hex[:8]
    sweeper = asyncio.create_task(_sweep(engine, partners, Billing(wallet, engine)))
    stdout.write(
        "KasPro chat — type anything to start, /quit to leave. "
        "/sandbox plays the bank or the minimart.\n"
    )
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
            if line.startswith("/sandbox"):
                stdout.write(await _sandbox(line, user, wallet, partners, partner_secret) + "\n")
                await engine.sweep_idle()
                continue
            if line.startswith("/photo "):
                line = await _store_photo(line, user, media, wallet, settings)
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


def _save_receipt(payload: Mapping[str, Any]) -> str:
    from bot.engine import receipt_from
    from bot.receipts import render_receipt

    receipt = receipt_from(payload["receipt"])
    folder = Path("receipts")
    folder.mkdir(exist_ok=True)
    path = folder / f"{receipt.reference}.png"
    path.write_bytes(render_receipt(receipt, str(payload.get("language", "id"))))
    return str(path)


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


async def _store_photo(
    line: str, user: str, media: MediaStore, wallet: Wallet, settings: Settings
) -> str:
    """``/photo PATH`` → the file stored like a photo from a channel (``/photo media:ID``)."""
    try:
        data = await asyncio.to_thread(_read_file, line.removeprefix("/photo ").strip())
    except OSError:
        return "/photo rejected:failed"
    if len(data) > settings.server.media_max_bytes:
        return "/photo rejected:too_big"
    kind = sniff_image_type(data)
    if kind not in IMAGE_TYPES:
        return "/photo rejected:not_image"
    media_id = await media.put(data, kind, channel=CHANNEL, chat_id=user, now=wallet.clock.now())
    return f"/photo media:{media_id}"


def _read_file(path: str) -> bytes:
    return Path(path).expanduser().read_bytes()


SANDBOX_HELP = (
    "      sandbox: /sandbox topup AMOUNT [BANK_CODE]   (a bank pays your virtual account)\n"
    "               /sandbox redeem TOKEN AMOUNT [indomaret|alfamart]   (a minimart redeems)\n"
    "               /sandbox premium   (KYC approved: you become Premium)\n"
    "               /sandbox customer PHONE FIRST [LAST]   (someone to send money to)"
)


async def _sandbox(line: str, user: str, wallet: Wallet, partners: Partners, secret: bytes) -> str:
    parts = line.split()
    try:
        if len(parts) == 2 and parts[1] == "premium":
            customer_id = await wallet.db.read(_linked_customer, CHANNEL, user)
            if customer_id is None:
                return "      (register or log in first)"
            await wallet.set_tier(customer_id, Tier.PREMIUM, actor="sandbox:kyc",
                                  reason="sandbox: KYC approved")
            return "      [sandbox: KYC approved → Premium]"
        if len(parts) >= 4 and parts[1] == "customer":
            other = await wallet.register(
                NewCustomer(parts[2], parts[3], " ".join(parts[4:])), pin="864209",
                actor="sandbox")
            return f"      [sandbox: customer {other.phone} registered, PIN 864209]"
        if len(parts) >= 3 and parts[1] == "topup":
            customer_id = await wallet.db.read(_linked_customer, CHANNEL, user)
            if customer_id is None:
                return "      (register or log in first)"
            customer = await wallet.customer(customer_id)
            bank = bank_by_code(wallet.settings, parts[3] if len(parts) > 3 else "014")
            payload = {
                "bank_code": bank.code,
                "va_number": va_number(bank, customer.phone),
                "amount": parse_amount(parts[2]),
                "reference": f"SANDBOX-{uuid.uuid4().hex[:10]}",
            }
            body, ts, sig = signed_request(secret, payload)
            answer = await partners.handle("va", body, ts, sig)
            return f"      [bank {bank.name} → KasPro] {answer.status} {answer.body}"
        if len(parts) >= 4 and parts[1] == "redeem":
            payload = {
                "partner": parts[4] if len(parts) > 4 else "indomaret",
                "token": parts[2],
                "amount": parse_amount(parts[3]),
                "reference": f"SANDBOX-{uuid.uuid4().hex[:10]}",
            }
            body, ts, sig = signed_request(secret, payload)
            answer = await partners.handle("redeem", body, ts, sig)
            return f"      [{payload['partner']} → KasPro] {answer.status} {answer.body}"
    except (ParseError, WalletError) as exc:
        return f"      ({exc})\n{SANDBOX_HELP}"
    return SANDBOX_HELP


def _linked_customer(conn: Connection, channel: str, chat_id: str) -> int | None:
    return conn.scalar(
        select(conversations.c.customer_id).where(
            conversations.c.channel == channel, conversations.c.chat_id == chat_id
        )
    )


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


async def _sweep(engine: Engine, partners: Partners, billing: Billing) -> None:
    while True:
        await asyncio.sleep(15)
        await engine.sweep_idle()
        await partners.expire_tokens()
        await billing.reconcile()
        await engine.wallet.expire_holds()
