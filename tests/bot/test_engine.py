"""The engine's guarantees: dedup, resume after restart, ordered delivery, secrets."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from datetime import timedelta
from typing import Any

from sqlalchemy import select

from bot.convo import RecordingChannel, RecordingOtpSender
from bot.engine import Engine, Inbound
from storage.db import Database
from storage.schema import conversations, outbox
from tests.conftest import Env
from tests.wallet.helpers import new_customer
from wallet.service import Wallet


def make_engine(
    env: Env, wallet: Wallet | None = None
) -> tuple[Engine, RecordingChannel, RecordingOtpSender]:
    channel, sms = RecordingChannel(), RecordingOtpSender()
    engine = Engine(
        wallet or env.wallet, idle_minutes=5, channels={"console": channel}, otp_sender=sms
    )
    return engine, channel, sms


def texts(channel: RecordingChannel) -> list[str]:
    return [p.get("text", p["type"]) for _, p in channel.sent]


class Chat:
    def __init__(self, engine: Engine, chat_id: str = "c1") -> None:
        self.engine, self.chat_id, self.n = engine, chat_id, 0

    async def say(self, text: str | None = None, **kw: Any) -> None:
        self.n += 1
        await self.engine.handle(
            Inbound("console", self.chat_id, f"{self.chat_id}-{self.n}", text=text, **kw)
        )


async def test_a_duplicate_delivery_is_dropped(env: Env) -> None:
    engine, channel, _ = make_engine(env)
    msg = Inbound("console", "c1", "update-1", text="halo")
    await engine.handle(msg)
    first = len(channel.sent)
    assert first > 0
    await engine.handle(msg)
    await asyncio.gather(*(engine.handle(msg) for _ in range(5)))
    assert len(channel.sent) == first


async def test_a_restart_resumes_mid_flow(env: Env) -> None:
    engine, channel, _ = make_engine(env)
    chat = Chat(engine)
    await chat.say("halo")
    await chat.say(choice="register")
    assert "Kirim nomor HP" in texts(channel)[-1]
    # a new process: new database pool, new wallet, new engine
    db2 = Database.from_url(env.url, pool_size=2)
    wallet2 = Wallet(db2, env.settings, env.clock, secret_key=b"test-secret")
    engine2, channel2, sms2 = make_engine(env, wallet2)
    chat.engine = engine2
    await chat.say("081234567890")
    assert "Kode OTP sudah dikirim" in texts(channel2)[-1]
    assert len(sms2.sent) == 1
    await db2.dispose()


class FlakyChannel:
    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.sent: list[str] = []

    async def send(self, chat_id: str, payload: Mapping[str, Any]) -> None:
        if self.failures:
            self.failures -= 1
            raise ConnectionError("platform is down")
        self.sent.append(str(payload.get("text")))


async def test_outbox_keeps_undelivered_replies_in_order_until_they_go(env: Env) -> None:
    flaky = FlakyChannel(failures=1)
    engine = Engine(env.wallet, channels={"console": flaky}, otp_sender=RecordingOtpSender())
    chat = Chat(engine)
    await chat.say("halo")  # the reply fails to go out
    assert flaky.sent == []
    await chat.say("bantuan")  # the next flush sends the old reply first, then the new ones
    assert flaky.sent[0].startswith("Halo! Ini KasPro")
    assert any("Kapan saja" in t for t in flaky.sent[1:])
    pending = await env.db.read(
        lambda c: c.execute(select(outbox.c.id).where(outbox.c.sent_at.is_(None))).all()
    )
    assert pending == []


async def test_failed_deliveries_are_retried_with_back_off(env: Env) -> None:
    flaky = FlakyChannel(failures=2)
    engine = Engine(env.wallet, channels={"console": flaky}, otp_sender=RecordingOtpSender())
    await Chat(engine).say("halo")
    assert flaky.sent == []
    assert await engine.deliver_due() == 0  # not yet: the back-off has not passed
    env.clock.advance(timedelta(seconds=3))
    assert await engine.deliver_due() == 0  # fails a second time
    env.clock.advance(timedelta(seconds=5))
    assert await engine.deliver_due() == 1
    assert flaky.sent[0].startswith("Halo! Ini KasPro")


async def test_concurrent_messages_of_one_chat_are_handled_one_at_a_time(env: Env) -> None:
    engine, channel, sms = make_engine(env)
    chat = Chat(engine)
    await chat.say("halo")
    await chat.say(choice="register")
    # the customer double-taps: phone number and a stray message at the same instant
    await asyncio.gather(chat.say("081234567890"), chat.say("081234567890"))
    # one of them sent the OTP; the other arrived in the OTP step and was explained
    assert len(sms.sent) == 1
    assert any("6 angka" in t for t in texts(channel)[-2:])


async def test_pins_never_rest_in_clear_and_are_deleted_from_the_chat(env: Env) -> None:
    engine, channel, sms = make_engine(env)
    chat = Chat(engine)
    for text in ("halo",):
        await chat.say(text)
    await chat.say(choice="register")
    await chat.say("081234567890")
    code = sms.sent[-1][1].split(": ")[1][:6]
    for text in (code, "Ani", "Wijaya", "02-03-1995", "ani@example.com", "864209", "864209"):
        await chat.say(text)
    assert "Selamat, Ani!" in " ".join(texts(channel))
    deletes = [p for _, p in channel.sent if p["type"] == "delete"]
    assert len(deletes) == 2  # the PIN and its confirmation
    dump = await env.db.read(
        lambda c: json.dumps(
            [
                list(r)
                for r in c.execute(
                    select(conversations.c.state, outbox.c.payload).select_from(
                        conversations.join(outbox, outbox.c.chat_id == conversations.c.chat_id)
                    )
                )
            ],
            default=str,
        )
    )
    assert "864209" not in dump and code not in dump


async def test_a_late_pin_after_the_idle_timeout_is_not_used(env: Env) -> None:
    cid = await new_customer(env.wallet, pin="246813")
    engine, channel, _ = make_engine(env)
    chat = Chat(engine)
    await env.db.write(
        lambda c: c.execute(
            conversations.insert().values(
                channel="console",
                chat_id="c1",
                customer_id=cid,
                language="id",
                updated_at=env.clock.now(),
            )
        )
    )
    await chat.say(choice="change_pin")
    assert "PIN kamu yang sekarang" in texts(channel)[-1]
    env.clock.advance(timedelta(minutes=6))
    await chat.say("000000")  # a wrong PIN, late: must not count as an attempt
    said = " ".join(texts(channel)[-3:])
    assert "lewat 5 menit" in said and "PIN salah" not in said
    assert (await env.wallet.customer(cid)).failed_pin_attempts == 0


async def test_the_idle_sweep_tells_the_customer(env: Env) -> None:
    engine, channel, _ = make_engine(env)
    chat = Chat(engine)
    await chat.say("halo")
    await chat.say(choice="register")
    env.clock.advance(timedelta(minutes=4))
    assert await engine.sweep_idle() == 0
    env.clock.advance(timedelta(minutes=1))
    assert await engine.sweep_idle() == 1
    assert "lewat 5 menit" in texts(channel)[-1]
    assert await env.db.read(lambda c: c.scalar(select(conversations.c.state))) is None


async def test_odd_messages_get_a_polite_reply(env: Env) -> None:
    engine, channel, _ = make_engine(env)
    chat = Chat(engine)
    for odd in ("", "   ", "🙂", "x" * 5000, "/start", "DROP TABLE customers;"):
        await chat.say(odd)
    assert all(t for t in texts(channel))
    await chat.say(photo_ref="/tmp/nothing.jpg")
    assert "Pilih salah satu" in texts(channel)[-1]
