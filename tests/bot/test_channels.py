"""Telegram and WhatsApp end to end: real python-telegram-bot and twilio libraries,
stand-in Bot API and Twilio servers on loopback, our aiohttp server in between."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from pydantic import SecretStr
from sqlalchemy import func, select
from twilio.request_validator import RequestValidator

from bot.engine import Inbound
from bot.server import Service, make_app
from storage.db import Database
from storage.schema import customers, inbox, media
from tests.conftest import Env
from tests.standins.telegram import (
    FakeTelegram,
    callback_update,
    contact_update,
    photo_update,
    text_update,
)
from tests.standins.twilio import FakeTwilio
from wallet.config import Settings
from wallet.service import Wallet

TOKEN = "123456:TEST-TOKEN"
SECRET = "webhook-secret-0123"
SID = "AC" + "1" * 32
AUTH = "twilio-auth-token"
PUBLIC = "https://kaspro.example"
WA_FROM = "+14155238886"
SMS_FROM = "+15005550006"


async def until(check: Callable[[], Any], within: float = 10.0) -> Any:
    deadline = asyncio.get_running_loop().time() + within
    while True:
        value = check()
        if value:
            return value
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("timed out waiting")
        await asyncio.sleep(0.02)


@dataclass
class Stack:
    env: Env
    tg: FakeTelegram
    tw: FakeTwilio
    client: TestClient
    service: Service
    settings: Settings

    async def telegram(self, update: dict[str, Any], secret: str | None = SECRET) -> int:
        headers = {"X-Telegram-Bot-Api-Secret-Token": secret} if secret is not None else {}
        resp = await self.client.post("/webhooks/telegram", json=update, headers=headers)
        return resp.status

    async def whatsapp(
        self, phone: str, body: str = "", *, sid: str, sign: bool = True, **extra: str
    ) -> int:
        form = {
            "MessageSid": sid,
            "From": f"whatsapp:{phone}",
            "To": f"whatsapp:{WA_FROM}",
            "Body": body,
            "NumMedia": "0",
            "ProfileName": "Budi",
            "WaId": phone.lstrip("+"),
            **extra,
        }
        sig = RequestValidator(AUTH).compute_signature(PUBLIC + "/webhooks/twilio", form)
        headers = {"X-Twilio-Signature": sig if sign else "forged"}
        resp = await self.client.post("/webhooks/twilio", data=form, headers=headers)
        return resp.status

    async def settled(self) -> None:
        """Wait until every accepted message has been applied."""
        await until(lambda: not self.service._draining)
        left = await self.env.db.read(lambda c: c.scalar(select(func.count()).select_from(inbox)))
        assert left == 0


def stack_settings(env: Env, tg_url: str, tw_url: str, **over: Any) -> Settings:
    return env.settings.model_copy(
        update={
            "telegram_token": SecretStr(TOKEN),
            "telegram_webhook_secret": SecretStr(SECRET),
            "telegram_api_url": tg_url,
            "twilio_account_sid": SID,
            "twilio_auth_token": SecretStr(AUTH),
            "twilio_whatsapp_from": WA_FROM,
            "twilio_sms_from": SMS_FROM,
            "twilio_api_url": tw_url,
            "public_url": PUBLIC,
            "partner_secret": SecretStr("partner-secret"),
            "telegram": env.settings.telegram.model_copy(update={"per_chat_burst": 50}),
            **over,
        }
    )


@pytest.fixture
async def stack(env: Env) -> AsyncIterator[Stack]:
    tg, tw = FakeTelegram(TOKEN), FakeTwilio(SID, AUTH)
    tg_server, tw_server = TestServer(tg.app()), TestServer(tw.app())
    await tg_server.start_server()
    await tw_server.start_server()
    settings = stack_settings(env, str(tg_server.make_url("")), str(tw_server.make_url("")))
    service = Service(settings, env.db, Wallet(env.db, settings, env.clock, secret_key=b"k"))
    client = TestClient(TestServer(make_app(service)))
    await client.start_server()
    yield Stack(env, tg, tw, client, service, settings)
    await client.close()
    await tg_server.close()
    await tw_server.close()


def otp_from(messages: list[dict[str, str]]) -> str:
    body = messages[-1].get("Body", "")
    found = re.search(r"(\d{6})", body)
    assert found, body
    return found.group(1)


async def test_telegram_register_reset_pin_and_balance(stack: Stack) -> None:
    chat = 5001
    s, tg = stack, stack.tg
    assert await s.telegram(text_update(chat, "halo")) == 200
    await until(lambda: any("Ini KasPro" in t for t in tg.texts(chat)))
    assert await s.telegram(callback_update(chat, "register")) == 200
    await until(lambda: any("Kirim nomor HP" in t for t in tg.texts(chat)))
    assert tg.sent("answerCallbackQuery")  # the button's spinner was stopped
    keyboard = tg.sent("sendMessage", chat)[-1]["reply_markup"]
    assert keyboard["keyboard"][0][0]["request_contact"] is True
    await s.telegram(contact_update(chat, "6281234567890"))
    sms = await until(lambda: s.tw.to("+6281234567890"))
    assert sms[-1]["From"] == SMS_FROM  # no WhatsApp session and no template: SMS
    for text in (otp_from(sms), "Siti", "Aminah", "17-08-1990", "siti@example.com"):
        await s.telegram(text_update(chat, text))
    await until(lambda: "Buat PIN" in tg.texts(chat)[-1])
    pin1, pin2 = text_update(chat, "246813"), text_update(chat, "246813")
    await s.telegram(pin1)
    await s.telegram(pin2)
    await until(lambda: any("Selamat, Siti!" in t for t in tg.texts(chat)))
    deleted = {int(p["message_id"]) for p in tg.sent("deleteMessage", chat)}
    assert {pin1["message"]["message_id"], pin2["message"]["message_id"]} <= deleted
    # forgot the PIN
    await s.telegram(callback_update(chat, "reset_pin"))
    await until(lambda: "terdaftar di KasPro" in tg.texts(chat)[-1])
    await s.telegram(text_update(chat, "081234567890"))
    sms = await until(lambda: len(s.tw.to("+6281234567890")) == 2 and s.tw.to("+6281234567890"))
    for text in (otp_from(sms), "975313", "975313"):
        await s.telegram(text_update(chat, text))
    await until(lambda: any("PIN baru sudah aktif" in t for t in tg.texts(chat)))
    await s.telegram(callback_update(chat, "balance"))
    await until(lambda: any("Saldo: Rp 0" in t for t in tg.texts(chat)))
    await s.settled()


async def test_whatsapp_conversation_with_numbered_options(stack: Stack) -> None:
    s, phone = stack, "+6281298765432"
    n = iter(range(1, 100))
    assert await s.whatsapp(phone, "halo", sid=f"SMa{next(n)}") == 200
    replies = await until(lambda: s.tw.to(phone))
    assert replies[0]["From"] == f"whatsapp:{WA_FROM}"
    assert "1. Daftar akun baru" in replies[0]["Body"]
    await s.whatsapp(phone, "1", sid=f"SMa{next(n)}")
    await until(lambda: "Kirim nomor HP" in s.tw.to(phone)[-1]["Body"])
    await s.whatsapp(phone, "0812-9876-5432", sid=f"SMa{next(n)}")
    # the customer is chatting on WhatsApp right now: the OTP goes there
    await until(lambda: any("Kode OTP KasPro" in m["Body"] for m in s.tw.to(phone)))
    otp = next(m for m in s.tw.to(phone) if "Kode OTP KasPro" in m["Body"])
    assert otp["From"] == f"whatsapp:{WA_FROM}"
    code = re.search(r"(\d{6})", otp["Body"]).group(1)  # type: ignore[union-attr]
    for text in (code, "Budi", "-", "5 Mei 1988", "budi@example.com", "864209", "864209"):
        await s.whatsapp(phone, text, sid=f"SMa{next(n)}")
    await until(lambda: any("Selamat, Budi!" in m["Body"] for m in s.tw.to(phone)))
    await s.whatsapp(phone, "1", sid=f"SMa{next(n)}")  # 1 = Saldo & limit
    await until(lambda: any("Saldo: Rp 0" in m["Body"] for m in s.tw.to(phone)))
    await s.settled()
    count = await s.env.db.read(lambda c: c.scalar(select(func.count()).select_from(customers)))
    assert count == 1


async def test_whatsapp_photo_is_fetched_with_the_account_credentials(stack: Stack) -> None:
    s, phone = stack, "+6281200001111"
    jpeg = b"\xff\xd8\xff\xe0" + b"KTP" * 1000
    s.tw.media["ktp1"] = (jpeg, "image/jpeg")
    url = str(s.client.server.make_url("")).rstrip("/")  # unused: media lives on Twilio
    assert url
    media_url = str(s.settings.twilio_api_url).rstrip("/") + "/media/ktp1"
    assert (
        await s.whatsapp(
            phone, "", sid="SMp1", NumMedia="1", MediaUrl0=media_url, MediaContentType0="image/jpeg"
        )
        == 200
    )
    await s.settled()
    assert s.tw.media_requests and s.tw.media_requests[0].startswith("Basic ")
    stored = await s.env.db.read(lambda c: c.execute(select(media.c.data, media.c.size)).all())
    assert [(bytes(d), n) for d, n in stored] == [(jpeg, len(jpeg))]


async def test_oversized_media_is_refused_politely(env: Env, stack: Stack) -> None:
    s, chat = stack, 5002
    s.settings.server.media_max_bytes = 1000  # a small limit for the test
    s.tg.files["big"] = b"\xff\xd8\xff" + b"x" * 5000
    await s.telegram(photo_update(chat, "big", 5003))
    await until(lambda: any("terlalu besar" in t for t in s.tg.texts(chat)))
    s.tw.media["big"] = (b"\xff\xd8\xff" + b"x" * 5000, "image/jpeg")
    phone = "+6281200002222"
    await s.whatsapp(
        phone,
        "",
        sid="SMbig",
        NumMedia="1",
        MediaUrl0=str(s.settings.twilio_api_url).rstrip("/") + "/media/big",
    )
    await until(lambda: any("terlalu besar" in m["Body"] for m in s.tw.to(phone)))
    s.tw.media["doc"] = (b"%PDF-1.7 not an image", "application/pdf")
    await s.whatsapp(
        phone,
        "",
        sid="SMdoc",
        NumMedia="1",
        MediaUrl0=str(s.settings.twilio_api_url).rstrip("/") + "/media/doc",
    )
    await until(lambda: any("bukan foto" in m["Body"] for m in s.tw.to(phone)))
    await s.settled()
    assert await env.db.read(lambda c: c.scalar(select(func.count()).select_from(media))) == 0


async def test_forged_and_missing_signatures_are_refused(stack: Stack) -> None:
    s = stack
    assert await s.telegram(text_update(6001, "halo"), secret="wrong") == 403
    assert await s.telegram(text_update(6001, "halo"), secret=None) == 403
    assert await s.whatsapp("+6281211110000", "halo", sid="SMf1", sign=False) == 403
    resp = await s.client.post("/webhooks/twilio", data={"MessageSid": "SMf2", "From": "x"})
    assert resp.status == 403
    resp = await s.client.post(
        "/webhooks/telegram", data="not json", headers={"X-Telegram-Bot-Api-Secret-Token": SECRET}
    )
    assert resp.status == 400
    await asyncio.sleep(0.2)
    assert s.tg.sent() == [] and s.tw.messages == []
    assert await s.env.db.read(lambda c: c.scalar(select(func.count()).select_from(inbox))) == 0


async def test_the_same_update_five_times_concurrently_has_one_effect(stack: Stack) -> None:
    s, chat = stack, 7001
    update = text_update(chat, "halo")
    statuses = await asyncio.gather(*(s.telegram(update) for _ in range(5)))
    assert statuses == [200] * 5
    await s.settled()
    await asyncio.sleep(0.1)
    assert len(s.tg.sent("sendMessage", chat)) == 1
    dup = await asyncio.gather(
        *(s.whatsapp("+6281233334444", "halo", sid="SMdup") for _ in range(5))
    )
    assert dup == [200] * 5
    await s.settled()
    assert len(s.tw.to("+6281233334444")) == 1


async def test_unknown_and_foreign_updates_are_ignored(stack: Stack) -> None:
    s = stack
    edited = text_update(8001, "halo")
    edited["edited_message"] = edited.pop("message")
    group = text_update(8002, "halo")
    group["message"]["chat"]["type"] = "group"
    for update in (edited, group, {"update_id": 424242}):
        assert await s.telegram(update) == 200
    someone_else = contact_update(8003, "6281255556666", own=False)
    assert await s.telegram(someone_else) == 200
    await s.settled()
    assert s.tg.sent("sendMessage", 8001) == [] and s.tg.sent("sendMessage", 8002) == []


async def test_a_failed_send_is_retried_in_order(stack: Stack) -> None:
    s, chat = stack, 9001
    s.tg.fail_next = 1
    await s.telegram(text_update(chat, "halo"))
    await s.settled()
    assert s.tg.texts(chat) == [] and len(s.tg.failed) == 1  # the attempt failed (502)
    await s.telegram(text_update(chat, "bantuan"))
    await until(lambda: len(s.tg.texts(chat)) >= 2)
    assert "Ini KasPro" in s.tg.texts(chat)[0]


async def test_health_metrics_and_signed_media_links(stack: Stack) -> None:
    s = stack
    health = await (await s.client.get("/healthz")).json()
    assert health["status"] == "ok" and health["channels"] == ["sms", "telegram", "whatsapp"]
    await s.telegram(text_update(9101, "halo"))
    await s.settled()
    await until(lambda: s.tg.texts(9101))
    body = await (await s.client.get("/metrics")).text()
    assert 'kaspro_messages_in_total{channel="telegram"} 1.0' in body
    assert 'kaspro_messages_out_total{channel="telegram"}' in body
    assert "kaspro_message_seconds_bucket" in body
    media_id = await s.service.media.put(
        b"\x89PNG\r\n\x1a\nreceipt",
        "image/png",
        channel="telegram",
        chat_id="9101",
        now=s.env.clock.now(),
    )
    link = s.service.media.sign(media_id, 60)
    resp = await s.client.get(link)
    assert resp.status == 200 and await resp.read() == b"\x89PNG\r\n\x1a\nreceipt"
    assert (await s.client.get(link.replace("sig=", "sig=0"))).status == 403
    expired = s.service.media.sign(media_id, -1)
    assert (await s.client.get(expired)).status == 403


async def test_two_workers_keep_one_chat_in_order(env: Env, stack: Stack) -> None:
    if env.backend != "postgres":
        pytest.skip("several workers share one database on PostgreSQL; SQLite serves one")
    s = stack
    db2 = Database.from_url(env.url, pool_size=5)
    worker2 = Service(s.settings, db2, Wallet(db2, s.settings, env.clock, secret_key=b"k"))
    await worker2.start()
    workers = [s.service, worker2]
    chat = "+6281277778888"
    texts = ["halo", "1", chat]
    for i, text in enumerate(texts):  # interleaved: each message lands on another worker
        await workers[i % 2].accept(Inbound("whatsapp", chat, f"SMw{i}", text=text))
    await until(lambda: any("Kode OTP KasPro" in m["Body"] for m in s.tw.to(chat)))
    code = re.search(
        r"\d{6}", next(m["Body"] for m in s.tw.to(chat) if "Kode OTP KasPro" in m["Body"])
    ).group(0)  # type: ignore[union-attr]
    steps = [code, "Rina", "-", "1 Juni 1992", "rina@example.com", "135792", "135792", "1"]
    for i, text in enumerate(steps, start=len(texts)):
        await workers[i % 2].accept(Inbound("whatsapp", chat, f"SMw{i}", text=text))
    await until(lambda: any("Saldo: Rp 0" in m["Body"] for m in s.tw.to(chat)), within=20)
    await until(lambda: not s.service._draining and not worker2._draining)
    bodies = [m["Body"] for m in s.tw.to(chat)]
    assert sum("Selamat, Rina!" in b for b in bodies) == 1
    assert not any("belum paham" in b for b in bodies)  # nothing arrived out of order
    await worker2.stop()
    await db2.dispose()


async def link_customer(env: Env, channel: str, chat_id: str, *, phone: str) -> int:
    from sqlalchemy import insert

    from storage.schema import conversations
    from wallet.customers import NewCustomer

    customer = await env.wallet.register(NewCustomer(phone, "Siti", "Aminah"), pin="246813")
    await env.db.write(
        lambda c: c.execute(
            insert(conversations).values(
                channel=channel,
                chat_id=chat_id,
                customer_id=customer.id,
                language="id",
                updated_at=env.clock.now(),
                last_inbound_at=env.clock.now(),
            )
        )
    )
    return customer.id


async def va_topup(s: Stack, phone: str, amount: int, ref: str) -> None:
    from bot.partners import signed_request

    body, ts, sig = signed_request(
        b"partner-secret",
        {
            "bank_code": "014",
            "va_number": "39358" + phone.removeprefix("+62"),
            "amount": amount,
            "reference": ref,
        },
    )
    resp = await s.client.post(
        "/callbacks/va", data=body, headers={"X-Kaspro-Timestamp": ts, "X-Kaspro-Signature": sig}
    )
    assert resp.status == 200, await resp.text()


QR_FILE = __import__("pathlib").Path(__file__).parents[1] / "conversations/files/qris_static.png"


async def test_telegram_topup_bill_and_qris_with_receipt_images(stack: Stack) -> None:
    s, chat = stack, 5500
    cid = await link_customer(s.env, "telegram", str(chat), phone="081234567890")
    await va_topup(s, "+6281234567890", 300_000, "BCA-TG-1")
    await until(lambda: any("Saldo bertambah Rp 300.000" in t for t in s.tg.texts(chat)))
    await until(lambda: len(s.tg.sent("sendPhoto", chat)) == 1)  # the top-up's receipt
    for data in ("bills", "pulsa", "self", "telkomsel50", "yes"):
        await s.telegram(callback_update(chat, data))
    await until(lambda: "PIN" in s.tg.texts(chat)[-1])
    await s.telegram(text_update(chat, "246813"))
    await until(
        lambda: any("Pulsa 50rb untuk 081234567890 berhasil" in t for t in s.tg.texts(chat))
    )
    await until(lambda: len(s.tg.sent("sendPhoto", chat)) == 2)
    s.tg.files["qr1"] = QR_FILE.read_bytes()
    await s.telegram(photo_update(chat, "qr1", len(s.tg.files["qr1"])))
    await until(lambda: any("Bayar ke WARUNG BU SRI" in t for t in s.tg.texts(chat)))
    await s.telegram(text_update(chat, "25rb"))
    await s.telegram(callback_update(chat, "yes"))
    await s.telegram(text_update(chat, "246813"))
    await until(lambda: any("ke WARUNG BU SRI berhasil" in t for t in s.tg.texts(chat)))
    await until(lambda: len(s.tg.sent("sendPhoto", chat)) == 3)
    await s.settled()
    assert (await s.env.wallet.balance(cid)).balance == 300_000 - 51_500 - 25_000


async def test_whatsapp_topup_bill_and_qris_with_receipt_links(stack: Stack) -> None:
    s, phone = stack, "+6281277001122"
    cid = await link_customer(s.env, "whatsapp", phone, phone="081277001122")
    await va_topup(s, phone, 200_000, "BCA-WA-1")
    await until(lambda: any("Saldo bertambah" in m.get("Body", "") for m in s.tw.to(phone)))
    n = iter(range(100))
    for text in ("menu", "bayar tagihan & pulsa", "pulsa", "nomor saya"):
        await s.whatsapp(phone, text, sid=f"SMq{next(n)}")
    await until(lambda: "Pulsa 50rb" in s.tw.to(phone)[-1].get("Body", ""))
    for text in ("3", "ya", "246813"):
        await s.whatsapp(phone, text, sid=f"SMq{next(n)}")
    await until(lambda: any("berhasil" in m.get("Body", "") for m in s.tw.to(phone)))
    s.tw.media["qr"] = (QR_FILE.read_bytes(), "image/png")
    await s.whatsapp(
        phone,
        "",
        sid=f"SMq{next(n)}",
        NumMedia="1",
        MediaUrl0=str(s.settings.twilio_api_url).rstrip("/") + "/media/qr",
    )
    await until(lambda: any("WARUNG BU SRI" in m.get("Body", "") for m in s.tw.to(phone)))
    for text in ("10rb", "ya", "246813"):
        await s.whatsapp(phone, text, sid=f"SMq{next(n)}")
    await until(
        lambda: any("ke WARUNG BU SRI berhasil" in m.get("Body", "") for m in s.tw.to(phone))
    )
    await s.settled()
    receipts = [m for m in s.tw.to(phone) if m.get("MediaUrl")]
    assert len(receipts) >= 3  # top-up, bill, QRIS
    link = receipts[-1]["MediaUrl"]
    assert link.startswith(PUBLIC + "/media/")
    png = await s.client.get(link.removeprefix(PUBLIC))
    assert png.status == 200 and (await png.read())[:8] == b"\x89PNG\r\n\x1a\n"
    assert (await s.env.wallet.balance(cid)).balance == 200_000 - 51_500 - 10_000
