"""Telegram through python-telegram-bot: updates in, messages out."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import Any

from telegram import (
    Bot,
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    KeyboardButton,
    ReplyKeyboardMarkup,
    ReplyKeyboardRemove,
    Update,
)
from telegram.error import BadRequest, Forbidden, RetryAfter, TelegramError
from telegram.request import HTTPXRequest

from bot.engine import Inbound
from bot.ratelimit import RateLimiter

log = logging.getLogger("kaspro.telegram")
CHANNEL = "telegram"


def make_bot(token: str, api_url: str) -> Bot:
    """A Bot talking to ``api_url`` (Telegram's, or a stand-in in tests)."""
    base = api_url.rstrip("/")
    return Bot(
        token,
        base_url=f"{base}/bot",
        base_file_url=f"{base}/file/bot",
        request=HTTPXRequest(connection_pool_size=64, read_timeout=15, connect_timeout=5),
        get_updates_request=HTTPXRequest(read_timeout=40),
    )


class TelegramInbound:
    """What one update means for the engine, plus the Telegram-only extras."""

    def __init__(
        self,
        inbound: Inbound,
        callback_query_id: str | None = None,
        photo_file_id: str | None = None,
        photo_size: int = 0,
    ) -> None:
        self.inbound = inbound
        self.callback_query_id = callback_query_id
        self.photo_file_id = photo_file_id
        self.photo_size = photo_size


def parse_update(update: Update) -> TelegramInbound | None:
    """Map an update to an inbound message; None for updates we do not act on."""
    uid = str(update.update_id)
    if update.callback_query is not None:
        q = update.callback_query
        if q.message is None or q.data is None:
            return None
        inbound = Inbound(
            CHANNEL,
            str(q.message.chat.id),
            uid,
            choice=q.data,
            profile_name=q.from_user.first_name if q.from_user else None,
        )
        return TelegramInbound(inbound, callback_query_id=q.id)
    message = update.message
    if message is None or message.chat.type != "private":
        return None  # edited messages, channel posts, groups: not ours
    chat_id = str(message.chat.id)
    name = message.from_user.first_name if message.from_user else None
    common: dict[str, Any] = {"profile_name": name, "platform_message_id": str(message.message_id)}
    if message.contact is not None:
        contact = message.contact
        # only the sender's own number counts (not a contact card of someone else)
        if message.from_user is None or contact.user_id != message.from_user.id:
            return TelegramInbound(Inbound(CHANNEL, chat_id, uid, text="", **common))
        return TelegramInbound(
            Inbound(CHANNEL, chat_id, uid, contact=contact.phone_number, **common)
        )
    if message.photo:
        best = max(message.photo, key=lambda p: p.width * p.height)
        return TelegramInbound(
            Inbound(CHANNEL, chat_id, uid, photo_ref="pending", **common),
            photo_file_id=best.file_id,
            photo_size=best.file_size or 0,
        )
    if message.document is not None:
        doc = message.document
        return TelegramInbound(
            Inbound(CHANNEL, chat_id, uid, photo_ref="pending", **common),
            photo_file_id=doc.file_id,
            photo_size=doc.file_size or 0,
        )
    if message.text is not None:
        return TelegramInbound(Inbound(CHANNEL, chat_id, uid, text=message.text, **common))
    return TelegramInbound(Inbound(CHANNEL, chat_id, uid, text="", **common))


class TelegramChannel:
    """Delivers outbox payloads to Telegram chats, within Telegram's rate limits."""

    def __init__(self, bot: Bot, limiter: RateLimiter) -> None:
        self.bot = bot
        self.limiter = limiter

    async def send(self, chat_id: str, payload: Mapping[str, Any]) -> None:
        await self.limiter.acquire(chat_id)
        kind = payload.get("type")
        try:
            if kind == "delete":
                try:
                    await self.bot.delete_message(int(chat_id), int(payload["message_id"]))
                except BadRequest:  # too old, or already gone: nothing to hide any more
                    pass
                return
            protect = bool(payload.get("protect"))
            if kind == "receipt":
                png = await asyncio.to_thread(_render, payload)
                await self.bot.send_photo(
                    int(chat_id), photo=png, caption=str(payload.get("text", ""))[:1000]
                )
                return
            if kind == "image":
                await self.bot.send_photo(
                    int(chat_id),
                    photo=payload["url"],
                    caption=payload.get("text") or None,
                    protect_content=protect,
                )
                return
            await self.bot.send_message(
                int(chat_id),
                str(payload.get("text", "")),
                reply_markup=_markup(payload),
                protect_content=protect,
            )
        except RetryAfter as exc:  # flood control: the outbox retries later
            raise ConnectionError(f"telegram asks to retry after {exc.retry_after}s") from exc
        except Forbidden as exc:  # the customer blocked the bot: no point retrying soon
            raise ConnectionError(f"forbidden: {exc.message}") from exc
        except TelegramError as exc:
            raise ConnectionError(f"telegram error: {exc.message}") from exc

    async def answer_callback(self, callback_query_id: str) -> None:
        try:
            await self.bot.answer_callback_query(callback_query_id)
        except TelegramError as exc:
            log.info("callback answer failed", extra={"error": exc.message})


def _render(payload: Mapping[str, Any]) -> bytes:
    from bot.engine import receipt_from
    from bot.receipts import render_receipt

    return render_receipt(receipt_from(payload["receipt"]), str(payload.get("language", "id")))


def _markup(payload: Mapping[str, Any]) -> Any:
    if payload.get("share_phone"):
        label = str(payload.get("share_phone_label") or "📱")
        return ReplyKeyboardMarkup(
            [[KeyboardButton(label, request_contact=True)]],
            one_time_keyboard=True,
            resize_keyboard=True,
        )
    buttons = payload.get("buttons") or []
    if buttons:
        return InlineKeyboardMarkup(
            [[InlineKeyboardButton(b["label"], callback_data=b["value"][:64])] for b in buttons]
        )
    if payload.get("remove_keyboard"):
        return ReplyKeyboardRemove()
    return None
