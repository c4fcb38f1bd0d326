"""WhatsApp and SMS through Twilio: signed webhooks in, the twilio client out."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from twilio.base.exceptions import TwilioRestException
from twilio.http.async_http_client import AsyncTwilioHttpClient
from twilio.request_validator import RequestValidator
from twilio.rest import Client

from bot.engine import Inbound
from bot.ratelimit import RateLimiter

log = logging.getLogger("kaspro.twilio")
WHATSAPP = "whatsapp"
SMS = "sms"


def make_client(account_sid: str, auth_token: str, api_url: str) -> Client:
    """A twilio client whose API base URL can point at a stand-in (tests)."""
    client = Client(account_sid, auth_token, http_client=AsyncTwilioHttpClient())
    client.api.base_url = api_url.rstrip("/")
    return client


class SignatureChecker:
    def __init__(self, auth_token: str, public_url: str) -> None:
        self.validator = RequestValidator(auth_token)
        self.public_url = public_url.rstrip("/")

    def valid(self, path_qs: str, form: Mapping[str, str], signature: str) -> bool:
        """Twilio signs the public URL it called, so the check holds behind a proxy.
        (RequestValidator compares in constant time.)"""
        if not signature:
            return False
        return bool(self.validator.validate(self.public_url + path_qs, dict(form), signature))


class TwilioInbound:
    def __init__(
        self, inbound: Inbound, media_url: str | None = None, media_type: str | None = None
    ) -> None:
        self.inbound = inbound
        self.media_url = media_url
        self.media_type = media_type


def parse_form(form: Mapping[str, str]) -> TwilioInbound | None:
    sid = form.get("MessageSid") or form.get("SmsMessageSid")
    sender = form.get("From", "")
    if not sid or not sender:
        return None
    channel = WHATSAPP if sender.startswith("whatsapp:") else SMS
    chat_id = sender.removeprefix("whatsapp:")
    name = form.get("ProfileName") or None
    try:
        media_count = int(form.get("NumMedia", "0") or 0)
    except ValueError:
        media_count = 0
    if media_count > 0 and form.get("MediaUrl0"):
        return TwilioInbound(
            Inbound(channel, chat_id, sid, photo_ref="pending", profile_name=name),
            media_url=form["MediaUrl0"],
            media_type=form.get("MediaContentType0"),
        )
    body = form.get("Body", "")
    # WhatsApp "reply buttons"/list replies arrive with ButtonPayload
    if form.get("ButtonPayload"):
        return TwilioInbound(
            Inbound(channel, chat_id, sid, choice=form["ButtonPayload"], profile_name=name)
        )
    return TwilioInbound(Inbound(channel, chat_id, sid, text=body, profile_name=name))


def render_text(payload: Mapping[str, Any]) -> str:
    """Buttons become numbered options on WhatsApp and SMS."""
    text = str(payload.get("text", ""))
    buttons = payload.get("buttons") or []
    if buttons:
        text += "\n" + "\n".join(f"{n}. {b['label']}" for n, b in enumerate(buttons, start=1))
    return text


class SessionWindowClosed(ConnectionError):
    """WhatsApp allows free-form messages only within 24 hours of the customer's last one."""


class TwilioChannel:
    """Delivers outbox payloads over WhatsApp (or SMS) through Twilio."""

    def __init__(
        self,
        client: Client,
        sender: str,
        limiter: RateLimiter,
        *,
        whatsapp: bool,
        window_open: Callable[[str], Awaitable[bool]] | None = None,
        notification_content_sid: str = "",
        public_url: str = "",
        publish: Callable[[Mapping[str, Any]], Awaitable[str]] | None = None,
    ) -> None:
        self.client = client
        self.sender = sender
        self.limiter = limiter
        self.whatsapp = whatsapp
        self.window_open = window_open
        self.notification_content_sid = notification_content_sid
        self.public_url = public_url.rstrip("/")
        self.publish = publish  # receipt payload → a signed /media/… path

    def _addr(self, phone: str) -> str:
        return f"whatsapp:{phone}" if self.whatsapp else phone

    async def send(self, chat_id: str, payload: Mapping[str, Any]) -> None:
        if payload.get("type") == "delete":
            return  # WhatsApp and SMS cannot delete the customer's message
        await self.limiter.acquire(chat_id)
        kwargs: dict[str, Any] = {"to": self._addr(chat_id), "from_": self._addr(self.sender)}
        body = render_text(payload)
        outside = (
            self.whatsapp and self.window_open is not None and not await self.window_open(chat_id)
        )
        if outside:
            if not self.notification_content_sid:
                raise SessionWindowClosed("outside the 24-hour window and no template set")
            kwargs["content_sid"] = self.notification_content_sid
            kwargs["content_variables"] = _json({"1": body[:1000]})
        else:
            kwargs["body"] = body
            if payload.get("type") == "image" and payload.get("url"):
                kwargs["media_url"] = [self.public_url + str(payload["url"])]
            if payload.get("type") == "receipt" and self.publish is not None and self.whatsapp:
                kwargs["media_url"] = [self.public_url + await self.publish(payload)]
        await self._create(**kwargs)

    async def send_template(self, to: str, content_sid: str, variables: Mapping[str, str]) -> None:
        await self.limiter.acquire(to)
        await self._create(
            to=self._addr(to),
            from_=self._addr(self.sender),
            content_sid=content_sid,
            content_variables=_json(dict(variables)),
        )

    async def send_text(self, to: str, body: str) -> None:
        await self.limiter.acquire(to)
        await self._create(to=self._addr(to), from_=self._addr(self.sender), body=body)

    async def _create(self, **kwargs: Any) -> None:
        try:
            await self.client.messages.create_async(**kwargs)
        except TwilioRestException as exc:
            raise ConnectionError(f"twilio {exc.status}: {exc.msg}") from exc


class TwilioOtpSender:
    """OTPs by WhatsApp first, SMS as the fallback (order from config)."""

    def __init__(
        self,
        whatsapp: TwilioChannel | None,
        sms: TwilioChannel | None,
        order: list[str],
        otp_content_sid: str = "",
    ) -> None:
        self.whatsapp = whatsapp
        self.sms = sms
        self.order = order
        self.otp_content_sid = otp_content_sid

    async def send_otp(self, phone: str, text: str, code: str) -> None:
        errors: list[str] = []
        for channel in self.order:
            try:
                if channel == WHATSAPP and self.whatsapp is not None:
                    if self.otp_content_sid:
                        await self.whatsapp.send_template(phone, self.otp_content_sid, {"1": code})
                        return
                    if self.whatsapp.window_open and await self.whatsapp.window_open(phone):
                        await self.whatsapp.send_text(phone, text)
                        return
                    errors.append("whatsapp: no template and no open session")
                elif channel == SMS and self.sms is not None:
                    await self.sms.send_text(phone, text)
                    return
            except ConnectionError as exc:
                errors.append(f"{channel}: {exc}")
        raise ConnectionError("; ".join(errors) or "no OTP channel configured")


def _json(value: Mapping[str, str]) -> str:
    import json

    return json.dumps(value, ensure_ascii=False)
