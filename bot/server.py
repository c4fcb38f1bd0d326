"""``kaspro serve``: one aiohttp application for the webhooks, callbacks, media and metrics.

Inbound messages are persisted to the inbox before the webhook answers 200 (a crash never
loses an accepted message), deduplicated at the door, then applied in arrival order per
chat by whichever worker holds the chat's lock (a PostgreSQL advisory lock across
workers). The engine records the delivery id in the same transaction as its effects, so
a message is applied exactly once even when two workers race.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import asdict
from typing import Any

import aiohttp
from aiohttp import web
from sqlalchemy import Connection, func, select, text
from sqlalchemy.dialects import postgresql, sqlite
from telegram import Bot, Update
from telegram.error import TelegramError

from bot.billing import Billing
from bot.channels.telegram import TelegramChannel, make_bot, parse_update
from bot.channels.twilio import (
    SMS,
    WHATSAPP,
    SignatureChecker,
    TwilioChannel,
    TwilioOtpSender,
    make_client,
    parse_form,
)
from bot.engine import ChannelAdapter, Engine, Inbound, OtpSender
from bot.media import IMAGE_TYPES, MediaStore, sniff_image_type
from bot.metrics import Metrics
from bot.partners import Partners
from bot.providers.digiflazz import DigiflazzBiller, result_of, webhook_valid
from bot.providers.disbursement_http import HttpDisbursement
from bot.ratelimit import RateLimiter
from storage.db import Database
from storage.schema import conversations, inbox
from wallet.billers import Biller, PayResult, SandboxBiller
from wallet.config import Settings
from wallet.disbursement import Disbursement, SandboxDisbursement
from wallet.service import Wallet

log = logging.getLogger("kaspro.server")
SERVICE: web.AppKey[Service] = web.AppKey("service")
TELEGRAM_POLLING: web.AppKey[bool] = web.AppKey("telegram_polling", bool)
EMPTY_TWIML = '<?xml version="1.0" encoding="UTF-8"?><Response></Response>'
WHATSAPP_WINDOW_SECONDS = 24 * 3600


class Service:
    """Everything ``kaspro serve`` runs, wired from settings."""

    def __init__(
        self,
        settings: Settings,
        db: Database,
        wallet: Wallet,
        *,
        otp_sender: OtpSender | None = None,
    ) -> None:
        self.settings = settings
        self.db = db
        self.wallet = wallet
        self.metrics = Metrics()
        key = (
            settings.secret_key.get_secret_value().encode()
            if settings.secret_key
            else wallet.otp._key
        )
        self.media = MediaStore(db, key)
        self.http: aiohttp.ClientSession | None = None
        channels: dict[str, ChannelAdapter] = {}

        self.bot: Bot | None = None
        self.telegram: TelegramChannel | None = None
        if settings.telegram_token is not None:
            self.bot = make_bot(
                settings.telegram_token.get_secret_value(), settings.telegram_api_url
            )
            tg = settings.telegram
            self.telegram = TelegramChannel(
                self.bot,
                RateLimiter(tg.messages_per_second, tg.per_chat_per_second, tg.per_chat_burst),
            )
            channels["telegram"] = self.telegram
        else:
            log.info("Telegram disabled: KASPRO_TELEGRAM_TOKEN is not set")

        self.twilio_checker: SignatureChecker | None = None
        self.twilio_client: Any = None
        whatsapp = sms = None
        if settings.twilio_account_sid and settings.twilio_auth_token is not None:
            token = settings.twilio_auth_token.get_secret_value()
            client = make_client(settings.twilio_account_sid, token, settings.twilio_api_url)
            self.twilio_client = client
            self.twilio_checker = SignatureChecker(token, settings.public_url)
            limiter = RateLimiter(settings.twilio.messages_per_second)
            if settings.twilio_whatsapp_from:
                whatsapp = TwilioChannel(
                    client,
                    settings.twilio_whatsapp_from,
                    limiter,
                    whatsapp=True,
                    window_open=self.whatsapp_window_open,
                    notification_content_sid=settings.twilio.notification_content_sid,
                    public_url=settings.public_url,
                    publish=self.publish_receipt,
                )
                channels[WHATSAPP] = whatsapp
            if settings.twilio_sms_from:
                sms = TwilioChannel(client, settings.twilio_sms_from, limiter, whatsapp=False)
                channels[SMS] = sms
        else:
            log.info("WhatsApp/SMS disabled: KASPRO_TWILIO_ACCOUNT_SID/AUTH_TOKEN are not set")
        if otp_sender is None and (whatsapp or sms):
            otp_sender = TwilioOtpSender(
                whatsapp, sms, settings.twilio.otp_channels, settings.twilio.otp_content_sid
            )
        if otp_sender is None:
            log.warning("no OTP channel configured: OTPs cannot be delivered")
        self.engine = Engine(
            wallet,
            idle_minutes=settings.idle_timeout_minutes,
            channels=channels,
            otp_sender=otp_sender,
            metrics=self.metrics,
            biller=make_biller(settings),
            disbursement=make_disbursement(settings),
        )
        self.partners = Partners(wallet, self.engine)
        self.billing = Billing(wallet, self.engine)
        self._draining: dict[tuple[str, str], asyncio.Task[None]] = {}
        # Chats applied at once. Each holds a connection for its chat lock and needs others
        # for its transactions: bounded well below the pool, they can never starve it.
        self._slots = asyncio.Semaphore(max(2, settings.db.pool_size // 4))
        self._again: set[tuple[str, str]] = set()
        self._tasks: set[asyncio.Task[Any]] = set()

    # ------------------------------------------------------------------ lifecycle
    async def start(self) -> None:
        self.http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30))
        if self.bot is not None:
            await self.bot.initialize()
        await self.resume()

    async def stop(self) -> None:
        for task in list(self._draining.values()) + list(self._tasks):
            task.cancel()
        for task in list(self._draining.values()) + list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self.bot is not None:
            await self.bot.shutdown()
        if self.http is not None:
            await self.http.close()
        if self.twilio_client is not None:
            await self.twilio_client.http_client.close()

    async def resume(self) -> None:
        """Apply whatever was accepted but not applied (after a crash or restart)."""
        for channel, chat_id in await self.db.read(_inbox_chats):
            self.schedule(channel, chat_id)

    def spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # ------------------------------------------------------------------ inbound
    async def accept(self, inbound: Inbound, extra: dict[str, Any] | None = None) -> bool:
        """Persist ``inbound`` and schedule it; False when it was delivered before."""
        payload = {k: v for k, v in asdict(inbound).items() if v is not None}
        payload.pop("inbox_id", None)
        if extra:
            payload["_extra"] = extra
        fresh = await self.db.write(_insert_inbox, inbound, payload, self.wallet.clock.now())
        if not fresh:
            self.metrics.duplicates.labels(inbound.channel).inc()
            return False
        self.metrics.messages_in.labels(inbound.channel).inc()
        self.schedule(inbound.channel, inbound.chat_id)
        return True

    def schedule(self, channel: str, chat_id: str) -> None:
        key = (channel, chat_id)
        if key in self._draining:
            self._again.add(key)  # the running drain picks it up
            return
        task = asyncio.get_running_loop().create_task(self._drain(channel, chat_id))
        self._draining[key] = task

    async def _drain(self, channel: str, chat_id: str) -> None:
        key = (channel, chat_id)
        try:
            while True:
                self._again.discard(key)
                async with self._slots, self.db.chat_lock(f"chat:{channel}:{chat_id}"):
                    while rows := await self.db.read(_inbox_for_chat, channel, chat_id):
                        for row_id, payload in rows:
                            await self._apply_one(row_id, payload)
                if key not in self._again:
                    return
        except Exception:
            self.metrics.errors.labels("drain").inc()
            log.exception("processing a chat failed", extra={"channel": channel})
        finally:
            self._draining.pop(key, None)

    async def _apply_one(self, row_id: int, payload: dict[str, Any]) -> None:
        extra = payload.pop("_extra", {}) or {}
        inbound = Inbound(**payload, inbox_id=row_id)
        if inbound.photo_ref == "pending":
            inbound = await self._fetch_media(inbound, extra)
        started = time.perf_counter()
        await self.engine.handle(inbound)
        self.metrics.latency.labels(inbound.channel).observe(time.perf_counter() - started)

    async def _fetch_media(self, inbound: Inbound, extra: dict[str, Any]) -> Inbound:
        limit = self.settings.server.media_max_bytes
        try:
            if inbound.channel == "telegram":
                data, ctype = await self._telegram_file(extra, limit)
            else:
                data, ctype = await self._twilio_media(extra, limit)
        except MediaRejected as exc:
            return _with_photo(inbound, f"rejected:{exc.reason}")
        except (TimeoutError, aiohttp.ClientError, OSError, TelegramError) as exc:
            log.warning("media fetch failed", extra={"error": str(exc)})
            return _with_photo(inbound, "rejected:failed")
        if ctype not in IMAGE_TYPES:
            return _with_photo(inbound, "rejected:not_image")
        media_id = await self.media.put(
            data,
            ctype,
            channel=inbound.channel,
            chat_id=inbound.chat_id,
            now=self.wallet.clock.now(),
        )
        return _with_photo(inbound, f"media:{media_id}")

    async def _telegram_file(self, extra: dict[str, Any], limit: int) -> tuple[bytes, str]:
        assert self.bot is not None
        if int(extra.get("size") or 0) > limit:
            raise MediaRejected("too_big")
        tg_file = await self.bot.get_file(extra["file_id"])
        if (tg_file.file_size or 0) > limit:
            raise MediaRejected("too_big")
        data = bytes(await tg_file.download_as_bytearray())
        if len(data) > limit:
            raise MediaRejected("too_big")
        return data, sniff_image_type(data)

    async def _twilio_media(self, extra: dict[str, Any], limit: int) -> tuple[bytes, str]:
        assert self.http is not None
        token = self.settings.twilio_auth_token
        auth = aiohttp.encode_basic_auth(
            self.settings.twilio_account_sid or "", token.get_secret_value() if token else ""
        )
        async with self.http.get(extra["url"], headers={"Authorization": auth}) as resp:
            resp.raise_for_status()
            if (resp.content_length or 0) > limit:
                raise MediaRejected("too_big")
            data = bytearray()
            async for chunk in resp.content.iter_chunked(65536):
                data += chunk
                if len(data) > limit:
                    raise MediaRejected("too_big")
        return bytes(data), sniff_image_type(bytes(data))

    async def publish_receipt(self, payload: Mapping[str, Any]) -> str:
        """Render a receipt, keep it, and return a signed, expiring link to it."""
        from bot.engine import receipt_from
        from bot.receipts import render_receipt

        png = await asyncio.to_thread(
            render_receipt, receipt_from(payload["receipt"]), str(payload.get("language", "id"))
        )
        media_id = await self.media.put(
            png, "image/png", channel="receipt", chat_id="", now=self.wallet.clock.now()
        )
        ttl = self.settings.server.media_link_ttl_minutes * 60
        return self.media.sign(media_id, ttl)

    async def whatsapp_window_open(self, chat_id: str) -> bool:
        last = await self.db.read(_last_inbound, WHATSAPP, chat_id)
        if last is None:
            return False
        from wallet.clock import as_utc

        age = (self.wallet.clock.now() - as_utc(last)).total_seconds()
        return age < WHATSAPP_WINDOW_SECONDS

    # ------------------------------------------------------------------ background
    async def background(self) -> None:
        interval = self.settings.server.background_interval_seconds
        while True:
            await asyncio.sleep(interval)
            try:
                await self.engine.sweep_idle()
                await self.engine.deliver_due()
                await self.partners.expire_tokens()
                await self.billing.reconcile()
                await self.wallet.expire_holds()
                await self.resume()
                self.metrics.inbox_backlog.set(await self.db.read(_inbox_count))
            except Exception:
                self.metrics.errors.labels("background").inc()
                log.exception("background pass failed")

    async def poll_telegram(self) -> None:
        """Long polling instead of a webhook (no public URL needed)."""
        assert self.bot is not None
        await self.bot.delete_webhook()
        offset: int | None = None
        while True:
            try:
                updates = await self.bot.get_updates(
                    offset=offset, timeout=30, allowed_updates=["message", "callback_query"]
                )
            except Exception:
                log.exception("getUpdates failed")
                await asyncio.sleep(5)
                continue
            for update in updates:
                offset = update.update_id + 1
                await self._accept_telegram(update)

    async def _accept_telegram(self, update: Update) -> None:
        parsed = parse_update(update)
        if parsed is None:
            return
        extra = None
        if parsed.photo_file_id:
            extra = {"file_id": parsed.photo_file_id, "size": parsed.photo_size}
        await self.accept(parsed.inbound, extra)
        if parsed.callback_query_id and self.telegram is not None:
            self.spawn(self.telegram.answer_callback(parsed.callback_query_id))


class MediaRejected(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


# ====================================================================== HTTP


def make_app(service: Service) -> web.Application:
    app = web.Application(client_max_size=1024 * 1024)
    app[SERVICE] = service
    app.router.add_post("/webhooks/telegram", telegram_webhook)
    app.router.add_post("/webhooks/twilio", twilio_webhook)
    app.router.add_post("/callbacks/va", partner_callback("va"))
    app.router.add_post("/partner/tokens/redeem", partner_callback("redeem"))
    app.router.add_post("/callbacks/biller", biller_callback)
    app.router.add_post("/callbacks/disbursement", disbursement_callback)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/media/{media_id}", media_file)
    app.cleanup_ctx.append(_lifecycle)
    return app


async def _lifecycle(app: web.Application) -> AsyncIterator[None]:
    service: Service = app[SERVICE]
    await service.start()
    service.spawn(service.background())
    if app.get(TELEGRAM_POLLING):
        service.spawn(service.poll_telegram())
    yield
    await service.stop()


async def telegram_webhook(request: web.Request) -> web.Response:
    service: Service = request.app[SERVICE]
    if service.bot is None or service.settings.telegram_webhook_secret is None:
        raise web.HTTPNotFound()
    expected = service.settings.telegram_webhook_secret.get_secret_value()
    given = request.headers.get("X-Telegram-Bot-Api-Secret-Token", "")
    if not hmac.compare_digest(given.encode(), expected.encode()):
        raise web.HTTPForbidden(text="bad secret token")
    try:
        data = await request.json()
        update = Update.de_json(data, service.bot)
    except (ValueError, KeyError, TypeError):
        raise web.HTTPBadRequest(text="not a Telegram update") from None
    if update is None:
        raise web.HTTPBadRequest(text="not a Telegram update")
    await service._accept_telegram(update)
    return web.Response(text="ok")


async def twilio_webhook(request: web.Request) -> web.Response:
    service: Service = request.app[SERVICE]
    if service.twilio_checker is None:
        raise web.HTTPNotFound()
    form = {k: str(v) for k, v in (await request.post()).items()}
    signature = request.headers.get("X-Twilio-Signature", "")
    if not service.twilio_checker.valid(request.path_qs, form, signature):
        raise web.HTTPForbidden(text="bad signature")
    parsed = parse_form(form)
    if parsed is None:
        raise web.HTTPBadRequest(text="not a Twilio message")
    extra = {"url": parsed.media_url, "type": parsed.media_type} if parsed.media_url else None
    await service.accept(parsed.inbound, extra)
    return web.Response(text=EMPTY_TWIML, content_type="text/xml")


def partner_callback(kind: str) -> Any:
    async def handler(request: web.Request) -> web.Response:
        service: Service = request.app[SERVICE]
        body = await request.read()
        answer = await service.partners.handle(
            kind,
            body,
            request.headers.get("X-Kaspro-Timestamp", ""),
            request.headers.get("X-Kaspro-Signature", ""),
        )
        return web.json_response(answer.body, status=answer.status)

    return handler


async def biller_callback(request: web.Request) -> web.Response:
    """The aggregator's webhook: a payment's final status, signed with HMAC-SHA1."""
    service: Service = request.app[SERVICE]
    secret = service.settings.biller_webhook_secret
    if secret is None:
        raise web.HTTPNotFound()
    body = await request.read()
    if not webhook_valid(
        secret.get_secret_value().encode(), body, request.headers.get("X-Hub-Signature", "")
    ):
        return web.json_response({"status": "rejected", "reason": "bad_signature"}, status=401)
    try:
        data = json.loads(body)["data"]
        ref = str(data["ref_id"])
    except (ValueError, KeyError, TypeError):
        return web.json_response({"status": "rejected", "reason": "malformed"}, status=400)
    moved = await service.billing.settle(ref, result_of(data), actor="biller:callback")
    state = moved.state.value if moved is not None else "unknown"
    return web.json_response({"status": "ok", "state": state})


async def disbursement_callback(request: web.Request) -> web.Response:
    """The disbursement provider's final status for a bank transfer, signed like every
    partner callback (HMAC-SHA256 over "<timestamp>.<body>")."""
    service: Service = request.app[SERVICE]
    body = await request.read()
    if service.partners.secret is None:
        raise web.HTTPNotFound()
    if not service.partners.authentic(
        body,
        request.headers.get("X-Kaspro-Timestamp", ""),
        request.headers.get("X-Kaspro-Signature", ""),
    ):
        return web.json_response({"status": "rejected", "reason": "bad_signature"}, status=401)
    try:
        data = json.loads(body)
        ref, status = str(data["reference"]), str(data["status"])
        if status not in ("success", "failed", "pending"):
            raise ValueError(status)
    except (ValueError, KeyError, TypeError):
        return web.json_response({"status": "rejected", "reason": "malformed"}, status=400)
    result = PayResult(status, str(data.get("bank_ref") or "") or None)  # type: ignore[arg-type]
    moved = await service.billing.settle(ref, result, actor="disbursement:callback")
    state = moved.state.value if moved is not None else "unknown"
    return web.json_response({"status": "ok", "state": state})


def make_disbursement(settings: Settings) -> Disbursement:
    if settings.money.disbursement_provider == "http":
        key = settings.disbursement_api_key
        if settings.disbursement_url and key is not None:
            return HttpDisbursement(settings.disbursement_url, key.get_secret_value())
        log.warning("money.disbursement_provider is http but KASPRO_DISBURSEMENT_URL/API_KEY "
                    "are not set: using the sandbox")
    return SandboxDisbursement()


def make_biller(settings: Settings) -> Biller:
    if settings.bills.provider == "digiflazz":
        key = settings.biller_api_key
        if settings.biller_username and key is not None:
            return DigiflazzBiller(
                settings.biller_url, settings.biller_username, key.get_secret_value()
            )
        log.warning(
            "bills.provider is digiflazz but KASPRO_BILLER_USERNAME/API_KEY are not "
            "set: using the sandbox biller"
        )
    return SandboxBiller()


async def healthz(request: web.Request) -> web.Response:
    service: Service = request.app[SERVICE]
    try:
        await service.db.read(lambda c: c.execute(text("SELECT 1")).scalar())
    except Exception as exc:  # report, don't crash
        return web.json_response({"status": "error", "database": str(exc)[:200]}, status=503)
    return web.json_response(
        {
            "status": "ok",
            "database": service.db.dialect,
            "channels": sorted(service.engine.channels),
        }
    )


async def metrics(request: web.Request) -> web.Response:
    service: Service = request.app[SERVICE]
    return web.Response(body=service.metrics.render(), content_type="text/plain", charset="utf-8")


async def media_file(request: web.Request) -> web.Response:
    service: Service = request.app[SERVICE]
    media_id = request.match_info["media_id"]
    if not service.media.verify(
        media_id, request.query.get("exp", ""), request.query.get("sig", "")
    ):
        raise web.HTTPForbidden(text="link expired or invalid")
    stored = await service.media.get(media_id)
    if stored is None:
        raise web.HTTPNotFound()
    return web.Response(
        body=stored.data,
        content_type=stored.content_type,
        headers={"Cache-Control": "private, max-age=300"},
    )


# ====================================================================== storage helpers


def _insert_inbox(conn: Connection, msg: Inbound, payload: dict[str, Any], now: Any) -> bool:
    ins: Any = (postgresql if conn.dialect.name == "postgresql" else sqlite).insert(inbox)
    row = conn.execute(
        ins.values(
            channel=msg.channel,
            chat_id=msg.chat_id,
            message_id=msg.message_id,
            payload=json.loads(json.dumps(payload, default=str)),
            received_at=now,
        )
        .on_conflict_do_nothing()
        .returning(inbox.c.id)
    ).first()
    return row is not None


def _inbox_for_chat(conn: Connection, channel: str, chat_id: str) -> list[tuple[int, Any]]:
    rows = conn.execute(
        select(inbox.c.id, inbox.c.payload)
        .where(inbox.c.channel == channel, inbox.c.chat_id == chat_id)
        .order_by(inbox.c.id)
        .limit(20)
    )
    return [(int(r[0]), dict(r[1])) for r in rows]


def _inbox_chats(conn: Connection) -> list[tuple[str, str]]:
    rows = conn.execute(select(inbox.c.channel, inbox.c.chat_id).distinct().limit(1000))
    return [(r[0], r[1]) for r in rows]


def _inbox_count(conn: Connection) -> int:
    return int(conn.scalar(select(func.count()).select_from(inbox)) or 0)


def _last_inbound(conn: Connection, channel: str, chat_id: str) -> Any:
    return conn.scalar(
        select(conversations.c.last_inbound_at).where(
            conversations.c.channel == channel, conversations.c.chat_id == chat_id
        )
    )


def _with_photo(inbound: Inbound, ref: str) -> Inbound:
    from dataclasses import replace

    return replace(inbound, photo_ref=ref)


async def serve(settings: Settings, host: str, port: int, telegram_polling: bool) -> None:
    from storage.migrate import upgrade

    await upgrade(settings.database_url)
    db = Database.from_url(settings.database_url, pool_size=settings.db.pool_size)
    wallet = Wallet(db, settings)
    service = Service(settings, db, wallet)
    app = make_app(service)
    app[TELEGRAM_POLLING] = telegram_polling and service.bot is not None
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    log.info(
        "serving",
        extra={
            "host": host,
            "port": port,
            "database": db.dialect,
            "channels": sorted(service.engine.channels),
        },
    )
    try:
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()
        await db.dispose()
