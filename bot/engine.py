"""The conversation engine: the only impure part of a conversation.

Per inbound message it serialises work per conversation (an asyncio lock here, a
PostgreSQL advisory lock across processes), drops deliveries already seen, turns secrets
(PINs) into checked events outside the transaction, then — in ONE database transaction —
loads the state, runs the flow's steps and the wallet commands they ask for (each in a
savepoint), saves the new state, writes the replies to the outbox and records the message
id. After commit the outbox is delivered through the channel adapters.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import weakref
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol

from sqlalchemy import Connection, bindparam, func, select, update
from sqlalchemy.dialects import postgresql, sqlite

from bot import i18n
from flows import commands as C
from flows.core import (
    Choice,
    Contact,
    Ctx,
    DeleteUserMessage,
    Done,
    Event,
    FlowState,
    Money,
    NewPinEntered,
    Outcome,
    Photo,
    PinConfirmEntered,
    PinEntered,
    Reply,
    Say,
    SendReceipt,
    Start,
    Step,
    Text,
)
from flows.parsing import ParseError, normalize_command, parse_pin
from flows.pay_qris import looks_like_qris
from flows.registry import FLOWS, load_state, menu_buttons
from storage.db import Database
from storage.schema import (
    conversations,
    customers,
    inbox,
    media,
    movements,
    outbox,
    processed_messages,
    support_requests,
)
from wallet import customers as cust
from wallet.billers import (
    Biller,
    BillerError,
    PayResult,
    SandboxBiller,
    bill_product,
    record_serial,
)
from wallet.disbursement import Disbursement, SandboxDisbursement
from wallet.errors import InvalidTransition, WalletError
from wallet.locks import xact_lock
from wallet.masking import mask_name, mask_phone
from wallet.model import CustomerParty, Kind, MoveMoney, Status, SystemKind, SystemParty
from wallet.otp import IssuedOtp
from wallet.security import pin_weakness
from wallet.service import Wallet, pin_reset_in
from wallet.topup import va_number

log = logging.getLogger("kaspro.engine")

BILLER_SETTLEMENT = SystemParty(SystemKind.BILLER_SETTLEMENT)
# Statements of every message, built once (SQLAlchemy then reuses their compiled form).
_LOAD_CONVERSATION = select(conversations).where(
    conversations.c.channel == bindparam("ch"), conversations.c.chat_id == bindparam("chat")
)
_FIRST_DELIVERY = {
    name: dialect.insert(processed_messages)
    .on_conflict_do_nothing()
    .returning(processed_messages.c.message_id)
    for name, dialect in (("postgresql", postgresql), ("sqlite", sqlite))
}
_BACKLOG = (
    select(outbox.c.id)
    .where(outbox.c.channel == bindparam("ch"), outbox.c.chat_id == bindparam("chat"))
    .where(outbox.c.sent_at.is_(None), outbox.c.failed_at.is_(None))
    .limit(1)
)
_CUSTOMER_PHONE = select(customers.c.phone).where(customers.c.id == bindparam("id"))
_CONVERSATION_COLUMNS = ("customer_id", "language", "state", "state_at", "buttons", "updated_at")
_UPDATE_CONVERSATION = {
    inbound: update(conversations)
    .where(
        conversations.c.channel == bindparam("w_ch"), conversations.c.chat_id == bindparam("w_chat")
    )
    .values(
        {
            c: bindparam(f"v_{c}")
            for c in (*_CONVERSATION_COLUMNS, *(("last_inbound_at",) if inbound else ()))
        }
    )
    for inbound in (False, True)
}

# Commands that only read: they run without a savepoint of their own.
READ_ONLY = (
    C.LookupPhone,
    C.EmailTaken,
    C.GetBalance,
    C.GetHistory,
    C.GetMovement,
    C.GetProfile,
    C.ListProducts,
    C.ListBanks,
    C.FindRecipient,
    C.RecentRecipients,
    C.GetTopupInfo,
)
DISBURSEMENT_CLEARING = SystemParty(SystemKind.DISBURSEMENT_CLEARING)
MAX_STEPS = 20  # a flow asking for commands in a loop is a bug; stop it
SECRET_EXPECTS = ("pin", "new_pin", "confirm_pin")


@dataclass(frozen=True, slots=True)
class Inbound:
    """One message from a customer, whatever the channel."""

    channel: str
    chat_id: str
    message_id: str
    text: str | None = None
    choice: str | None = None
    contact: str | None = None
    photo_ref: str | None = None
    profile_name: str | None = None
    # the message's id on the platform, for deleting it (Telegram message_id), when it
    # differs from the delivery id used for dedup (Telegram update_id)
    platform_message_id: str | None = None
    # the row in the inbox table this message was accepted into (deleted when applied)
    inbox_id: int | None = None


class ChannelAdapter(Protocol):
    async def send(self, chat_id: str, payload: Mapping[str, Any]) -> None: ...


class OtpSender(Protocol):
    async def send_otp(self, phone: str, text: str, code: str) -> None:
        """Deliver ``text`` (which contains ``code``) to ``phone``. Nothing is stored."""
        ...


@dataclass
class _Conv:
    channel: str
    chat_id: str
    customer_id: int | None
    language: str
    state: dict[str, Any] | None
    state_at: datetime | None
    buttons: list[dict[str, str]] | None
    exists: bool


@dataclass
class _Outcome:
    outbox: list[tuple[int, dict[str, Any]]] = field(default_factory=list)  # written this time
    backlog: bool = False  # older replies of this chat are still undelivered
    # (phone, text, code): sent after commit, kept only in memory
    otps: list[tuple[str, str, str]] = field(default_factory=list)
    duplicate: bool = False
    finished: list[str] = field(default_factory=list)  # flows that ended
    other_chats: list[tuple[str, str]] = field(default_factory=list)  # notified chats
    external: tuple[str, Any] | None = None  # (flow, command) to run after the commit
    state_json: Any = None  # the state saved, for the external's answer to check


class StateChanged(Exception):
    """The conversation moved on between preparing a secret and applying it: redo."""


class Engine:
    def __init__(
        self,
        wallet: Wallet,
        *,
        idle_minutes: int = 5,
        channels: Mapping[str, ChannelAdapter] | None = None,
        otp_sender: OtpSender | None = None,
        metrics: Any = None,
        biller: Biller | None = None,
        disbursement: Disbursement | None = None,
    ) -> None:
        self.wallet = wallet
        self.db: Database = wallet.db
        self.clock = wallet.clock
        self.idle = timedelta(minutes=idle_minutes)
        self.channels: dict[str, ChannelAdapter] = dict(channels or {})
        self.otp_sender = otp_sender
        self.metrics = metrics  # bot.metrics.Metrics, when served
        self.biller: Biller = biller or SandboxBiller()
        self.disbursement: Disbursement = disbursement or SandboxDisbursement()
        money = wallet.settings.money
        self.flow_config: dict[str, Any] = {
            "transfer_fee": money.transfer_fee,
            "bank_transfer_fee": money.bank_transfer_fee,
            "cashout_fee": money.cashout_fee,
            "cashout_denominations": tuple(money.cashout_denominations),
        }
        self._locks: weakref.WeakValueDictionary[tuple[str, str], asyncio.Lock] = (
            weakref.WeakValueDictionary()
        )

    # ================================================================ entry point
    async def handle(self, msg: Inbound) -> None:
        """Process one inbound message and deliver the replies."""
        key = (msg.channel, msg.chat_id)
        lock = self._locks.get(key)
        if lock is None:
            lock = self._locks[key] = asyncio.Lock()
        async with lock:
            for _ in range(3):
                # Only a message that could be a PIN needs work before the transaction
                # (argon2 is slow and must not run inside it): read the state first.
                event: Event | None = None
                seen: Any = _UNSEEN
                if msg.text is not None and _could_be_pin(msg.text):
                    conv = await self.db.read(self._load, msg.channel, msg.chat_id)
                    event, seen = await self._secret_or_none(conv, msg.text), conv.state
                try:
                    result = await self.wallet.run(self._apply, msg, event, seen)
                    break
                except StateChanged:
                    continue
            else:  # pragma: no cover - three concurrent workers on one chat in a row
                raise RuntimeError("conversation kept changing")
            await self._after_commit(result, msg.channel, msg.chat_id)
            await self._continue(result, msg.channel, msg.chat_id)

    async def _continue(self, result: _Outcome, channel: str, chat_id: str) -> None:
        """Run what a flow asked of the outside world (a biller...) after the commit, then
        feed the answer back to the flow in a new transaction."""
        while result.external is not None:
            flow, command = result.external
            outcome = await self._run_external(command)
            result = await self.wallet.run(
                self._resume, channel, chat_id, flow, outcome, result.state_json
            )
            await self._after_commit(result, channel, chat_id)

    async def _run_external(self, cmd: Any) -> Outcome:
        products = self.wallet.settings.bills.products
        try:
            match cmd:
                case C.BillInquiry(code, customer_no):
                    product = bill_product(products, code)
                    bill = await self.biller.inquiry(product, customer_no)
                    return Outcome(
                        True,
                        {
                            "name": bill.name,
                            "amount": bill.amount,
                            "admin_fee": bill.admin_fee,
                            "period": bill.period,
                            "product_name": product.name,
                        },
                    )
                case C.AccountInquiry(bank_code, account_no):
                    name = await self.disbursement.inquiry(bank_code, account_no)
                    return Outcome(True, {"name": name})
                case C.CallDisbursement(ref, bank_code, account_no, amount):
                    return await _payment(
                        ref, self.disbursement.send(ref, bank_code, account_no, amount)
                    )
                case C.DecodeQr(media_ref):
                    stored = await self.db.read(_load_media, media_ref.removeprefix("media:"))
                    if stored is None:
                        return Outcome(True, [])
                    from bot.qrdecode import decode_qr

                    return Outcome(True, await asyncio.to_thread(decode_qr, stored))
                case C.CallBiller(ref, code, customer_no, amount):
                    product = bill_product(products, code)
                    return await _payment(ref, self.biller.pay(ref, product, customer_no, amount))
        except BillerError as err:
            return Outcome(False, error=err.code, detail={"reason": err.reason})
        except Exception:
            log.exception("external call failed")
            return Outcome(False, error="biller_error", detail={"reason": "unavailable"})
        raise TypeError(f"unknown external command {cmd!r}")

    def _resume(
        self,
        conn: Connection,
        channel: str,
        chat_id: str,
        flow: str,
        outcome: Outcome,
        expected: Any,
    ) -> _Outcome:
        xact_lock(conn, f"conv:{channel}:{chat_id}")
        conv = self._load(conn, channel, chat_id)
        if conv.state != expected:  # cancelled or timed out meanwhile: the answer is moot
            return _Outcome()
        run = _Run(self, conn, conv, Inbound(channel, chat_id, "", None))
        run._step(flow, Done((outcome,)))
        return run.save()

    async def _after_commit(self, result: _Outcome, channel: str, chat_id: str) -> None:
        if self.metrics is not None:
            if result.duplicate:
                self.metrics.duplicates.labels(channel).inc()
            for flow in result.finished:
                self.metrics.flows.labels(flow, "ended").inc()
        for phone, body, code in result.otps:
            if self.otp_sender is not None:
                try:
                    await self.otp_sender.send_otp(phone, body, code)
                except Exception:
                    log.exception("OTP delivery failed", extra={"phone": mask_phone(phone)})
        if result.outbox:
            await self.flush(channel, chat_id, None if result.backlog else result.outbox)
        for other_channel, other_chat in result.other_chats:
            await self.flush(other_channel, other_chat)

    # ================================================================ secrets, outside the tx
    async def _secret_or_none(self, conv: _Conv, text: str) -> Event | None:
        state = self._live_state(conv)
        expects = state.get("expects") if state else None
        if expects in SECRET_EXPECTS:
            return await self._secret_event(conv, state or {}, str(expects), text)
        return None

    def _event(self, conv: _Conv, msg: Inbound) -> Event:
        """The event of a message that needed no work outside the transaction."""
        state = self._live_state(conv)
        expects = state.get("expects") if state else None
        if msg.text is not None and expects in SECRET_EXPECTS and not _is_command(msg.text):
            # not PIN-shaped (or it would have been checked before): explain the format
            if expects == "confirm_pin":
                return PinConfirmEntered(matches=False, format_ok=False)
            if expects == "new_pin":
                return NewPinEntered(weak="not_six_digits", pin_hash=None)
            return PinEntered("format")
        if msg.choice is not None:
            return Choice(msg.choice)
        if msg.contact is not None:
            return Contact(msg.contact)
        if msg.photo_ref is not None:
            return Photo(msg.photo_ref)
        if msg.text is not None:
            chosen = _match_button(msg.text, conv.buttons)
            return Choice(chosen) if chosen is not None else Text(msg.text)
        return Text("")

    async def _secret_event(
        self, conv: _Conv, state: dict[str, Any], expects: str, raw: str
    ) -> Event:
        try:
            pin = parse_pin(raw)
        except ParseError:
            if expects == "confirm_pin":
                return PinConfirmEntered(matches=False, format_ok=False)
            if expects == "new_pin":
                return NewPinEntered(weak="not_six_digits", pin_hash=None)
            return PinEntered("format")
        pins = self.wallet.pins
        customer_id = state.get("customer_id") or conv.customer_id
        if expects == "pin":
            if customer_id is None:
                return PinEntered("not_set")
            try:
                await self.wallet.verify_pin(int(customer_id), pin)
            except WalletError as err:
                return _pin_outcome(err)
            return PinEntered("ok")
        if expects == "confirm_pin":
            pending = state.get("pending_pin_hash")
            fingerprint = self._pin_fingerprint(conv, pin)
            if not pending or not hmac.compare_digest(str(pending), fingerprint):
                return PinConfirmEntered(matches=False)
            # confirmed: the one slow argon2id hash, for storage
            return PinConfirmEntered(matches=True, pin_hash=await pins.hash(pin))
        # new_pin
        birth = state.get("birth_date")
        current_hash = None
        if customer_id is not None:
            customer = await self.wallet.customer(int(customer_id))
            birth = birth or customer.birth_date
            if state.get("avoid_current_pin"):
                current_hash = await self.db.read(_pin_hash, int(customer_id))
        birth_date = _as_date(birth)
        weak = pin_weakness(pin, birth_date)
        if weak is None and current_hash and await pins.verify(current_hash, pin):
            weak = "same_as_old"
        # Until it is confirmed, the new PIN is kept as a keyed fingerprint (HMAC with the
        # server secret): comparing the confirmation needs no argon2 run.
        return NewPinEntered(weak=weak, pin_hash=None if weak else self._pin_fingerprint(conv, pin))

    def _pin_fingerprint(self, conv: _Conv, pin: str) -> str:
        return "hmac-sha256$" + self.wallet.keyed_digest("new-pin", conv.channel, conv.chat_id, pin)

    # ================================================================ the transaction
    def _apply(self, conn: Connection, msg: Inbound, event: Event | None, seen: Any) -> _Outcome:
        xact_lock(conn, f"conv:{msg.channel}:{msg.chat_id}")
        if not _first_delivery(conn, msg.channel, msg.message_id, self.clock.now()):
            return _Outcome(duplicate=True)
        conv = self._load(conn, msg.channel, msg.chat_id)
        if seen is not _UNSEEN and conv.state != seen:
            raise StateChanged()  # prepared against a state that has moved on
        if event is None:
            event = self._event(conv, msg)
        if msg.inbox_id is not None:
            conn.execute(inbox.delete().where(inbox.c.id == msg.inbox_id))
        run = _Run(self, conn, conv, msg)
        if isinstance(event, PinEntered | NewPinEntered | PinConfirmEntered):
            run.replies.append(DeleteUserMessage())
        run.dispatch(event)
        return run.save()

    # ================================================================ storage helpers
    def _load(self, conn: Connection, channel: str, chat_id: str) -> _Conv:
        row = conn.execute(_LOAD_CONVERSATION, {"ch": channel, "chat": chat_id}).first()
        if row is None:
            return _Conv(channel, chat_id, None, i18n.DEFAULT_LANGUAGE, None, None, None, False)
        return _Conv(
            channel,
            chat_id,
            row.customer_id,
            row.language,
            row.state,
            row.state_at,
            row.buttons,
            True,
        )

    def _live_state(self, conv: _Conv) -> dict[str, Any] | None:
        if conv.state is None or conv.state_at is None:
            return conv.state
        if self.clock.now() - _aware(conv.state_at) >= self.idle:
            return None
        return conv.state

    async def notify_customer(
        self, customer_id: int, message: Say | SendReceipt | tuple[Say | SendReceipt, ...]
    ) -> None:
        """Tell a customer something outside a conversation (a top-up arrived...)."""
        chats = await self.db.write(notify_rows, customer_id, message, self.clock.now())
        for channel, chat_id in chats:
            await self.flush(channel, chat_id)

    async def set_language(self, channel: str, chat_id: str, language: str) -> None:
        """Choose the language of a conversation (``kaspro chat --lang``)."""
        if language not in i18n.LANGUAGES:
            raise ValueError(f"language must be one of {i18n.LANGUAGES}")
        await self.db.write(_set_language, channel, chat_id, language, self.clock.now())

    # ================================================================ delivery
    async def flush(
        self,
        channel: str,
        chat_id: str,
        fresh: list[tuple[int, dict[str, Any]]] | None = None,
    ) -> int:
        """Deliver this chat's undelivered replies, oldest first. Returns how many went.

        ``fresh``: the replies just committed, when nothing older is waiting (saves a read).
        """
        adapter = self.channels.get(channel)
        if adapter is None:
            return 0
        rows = (
            fresh if fresh is not None else await self.db.read(_pending_for_chat, channel, chat_id)
        )
        sent: list[int] = []
        failure: tuple[int, str] | None = None
        for row_id, payload in rows:
            try:
                await adapter.send(chat_id, payload)
            except Exception as exc:  # keep order: stop at the first failure, retry later
                failure = (row_id, str(exc)[:300])
                if self.metrics is not None:
                    self.metrics.delivery_failures.labels(channel).inc()
                log.warning("delivery failed", extra={"channel": channel, "error": str(exc)})
                break
            sent.append(row_id)
            if self.metrics is not None:
                self.metrics.messages_out.labels(channel).inc()
        if sent or failure:
            await self.db.write(_mark_delivery, sent, failure, self.clock.now())
        return len(sent)

    async def deliver_due(self) -> int:
        """Retry undelivered replies whose back-off has passed (run periodically)."""
        chats = await self.db.read(_due_chats, self.clock.now())
        total = 0
        for channel, chat_id in chats:
            total += await self.flush(channel, chat_id)
        return total

    async def sweep_idle(self) -> int:
        """Cancel flows that waited on the customer longer than the idle timeout."""
        cutoff = self.clock.now() - self.idle
        stale = await self.db.read(_stale_conversations, cutoff)
        for channel, chat_id in stale:
            key = (channel, chat_id)
            lock = self._locks.get(key)
            if lock is None:
                lock = self._locks[key] = asyncio.Lock()
            async with lock:
                result = await self.wallet.run(self._expire, channel, chat_id, cutoff)
                await self._after_commit(result, channel, chat_id)
        return len(stale)

    def _expire(self, conn: Connection, channel: str, chat_id: str, cutoff: datetime) -> _Outcome:
        xact_lock(conn, f"conv:{channel}:{chat_id}")
        conv = self._load(conn, channel, chat_id)
        if conv.state is None or conv.state_at is None or _aware(conv.state_at) > cutoff:
            return _Outcome()
        run = _Run(self, conn, conv, Inbound(channel, chat_id, "", None))
        run.replies.append(Say("flow.timed_out", {"minutes": int(self.idle.total_seconds() // 60)}))
        run.state = None
        return run.save()


# ==================================================================== one message's run


class _Run:
    """The work of one message inside the transaction: steps, commands, replies."""

    def __init__(self, engine: Engine, conn: Connection, conv: _Conv, msg: Inbound) -> None:
        self.engine = engine
        self.conn = conn
        self.conv = conv
        self.msg = msg
        self.now = engine.clock.now()
        self.replies: list[Reply] = []
        self.otps: list[tuple[str, str, str]] = []
        self.finished: list[str] = []
        self.other_chats: set[tuple[str, str]] = set()  # told something: flush after commit
        self.external: tuple[str, Any] | None = None
        self.state: FlowState | None = None
        raw = engine._live_state(conv)
        if conv.state is not None and raw is None:  # waited too long: the flow is gone
            self.replies.append(
                Say("flow.timed_out", {"minutes": int(engine.idle.total_seconds() // 60)})
            )
        self.state = load_state(raw) if raw else None

    # ---------------------------------------------------------------- routing
    def dispatch(self, event: Event) -> None:
        if isinstance(event, Photo) and event.ref.startswith("rejected:"):
            # too big, not an image, or not fetchable: explain, keep the flow where it was
            self.replies.append(Say(f"media.{event.ref.removeprefix('rejected:')}"))
            return
        text = event.text if isinstance(event, Text) else None
        command = normalize_command(text) if text is not None else None
        if isinstance(event, Choice) and event.value == "menu":
            command = "menu"
        if command is not None:
            self._global(command)
            return
        if self.state is None:
            if isinstance(event, Choice) and event.value in FLOWS:
                self.start(event.value)
            elif isinstance(event, Photo) and self.conv.customer_id is not None:
                self._step("qris", Start("photo:" + event.ref))  # a photo of a QR: pay it
            elif text is not None and looks_like_qris(text) and self.conv.customer_id:
                self._step("qris", Start(text))
            else:
                self._menu(first=self.conv.customer_id is None and not self.conv.exists)
            return
        self.feed(event)

    def _global(self, command: str) -> None:
        if command == "help":
            self.replies.append(Say("help.text"))
            if self.state is None:
                self._menu()
            return
        if command == "cancel":
            self.replies.append(Say("flow.cancelled"))
            self.state = None
            self._menu()
            return
        if command == "menu":
            self.state = None
            self._menu()
            return
        self.state = None
        self.start("language" if command == "language" else "waiting_agent")

    def start(self, flow: str) -> None:
        self.state = None
        self._step(flow, Start())

    def feed(self, event: Event) -> None:
        assert self.state is not None
        self._step(self.state.flow, event)

    def _step(self, flow: str, event: Event) -> None:
        spec = FLOWS[flow]
        for _ in range(MAX_STEPS):
            result: Step = spec.step(self.state, event, self._ctx())
            self.replies.extend(result.replies)
            self.state = result.state
            if result.state is None:
                self.finished.append(flow)
            if not result.commands:
                if self.state is None and result.then_menu:
                    self._menu()
                return
            if any(getattr(c, "external", False) for c in result.commands):
                if len(result.commands) != 1 or self.state is None:
                    raise RuntimeError(f"flow {flow}: an external command must come alone")
                self.external = (flow, result.commands[0])  # run after the commit
                return
            event = Done(tuple(self._execute(c) for c in result.commands))
        raise RuntimeError(f"flow {flow} did not settle")

    def _menu(self, first: bool = False) -> None:
        registered = self.conv.customer_id is not None
        key = "menu.home" if registered else "menu.home_guest"
        self.replies.append(Say(key, buttons=menu_buttons(registered)))
        _ = first

    def _ctx(self) -> Ctx:
        phone = None
        if self.conv.customer_id is not None:
            phone = self.conn.scalar(_CUSTOMER_PHONE, {"id": self.conv.customer_id})
        return Ctx(
            customer_id=self.conv.customer_id,
            language=self.conv.language,
            channel=self.msg.channel,
            chat_id=self.msg.chat_id,
            now=self.now,
            phone=phone,
            config=self.engine.flow_config,
            profile_name=self.msg.profile_name,
            message_id=self.msg.message_id,
        )

    # ---------------------------------------------------------------- commands
    def _execute(self, command: Any) -> Outcome:
        if isinstance(command, READ_ONLY):  # nothing to undo: no savepoint
            try:
                return Outcome(True, self._run_command(command))
            except WalletError as err:
                return _failed(err)
        try:
            with self.conn.begin_nested():
                value = self._run_command(command)
        except WalletError as err:  # the savepoint undid whatever the command wrote
            return _failed(err)
        return value if isinstance(value, Outcome) else Outcome(True, value)

    def _run_command(self, cmd: Any) -> Any:
        conn, wallet, now = self.conn, self.engine.wallet, self.now
        actor = f"{self.msg.channel}:{self.msg.chat_id}"
        match cmd:
            case C.LookupPhone(phone):
                found = cust.customer_by_phone(conn, phone)
                return None if found is None else found.id
            case C.EmailTaken(email):
                return cust.find_conflict(conn, "", email) == "email"
            case C.RequestOtp(phone, purpose):
                issued: IssuedOtp = wallet.otp.request_in(conn, phone, purpose)
                minutes = wallet.settings.security.otp_ttl_minutes
                body = i18n.text(
                    self.conv.language, "otp.message", {"code": issued.code, "minutes": minutes}
                )
                self.otps.append((phone, body, issued.code))
                return {"expires_at": issued.expires_at, "left_today": issued.requests_left_today}
            case C.VerifyOtp(phone, purpose, code):
                failure = wallet.otp.verify_in(conn, phone, purpose, code)
                # a wrong code is recorded (attempts, block), so it is returned, not raised
                return _failed(failure) if failure is not None else True
            case C.Register():
                new = cust.NewCustomer(
                    cmd.phone,
                    cmd.first_name,
                    cmd.last_name,
                    cmd.birth_date,
                    cmd.email,
                    cmd.language,
                ).normalized()
                customer = cust.insert_customer(conn, new, cmd.pin_hash, now, actor)
                self.conv.customer_id = customer.id
                return customer.id
            case C.LinkChat(customer_id):
                self.conv.customer_id = customer_id
                return customer_id
            case C.SetPin(customer_id, pin_hash, reset):
                if reset:
                    return pin_reset_in(conn, customer_id, pin_hash, now, actor).id
                return cust.change_customer(
                    conn,
                    customer_id,
                    now=now,
                    actor=actor,
                    action="customer.pin_changed",
                    pin_hash=pin_hash,
                    failed_pin_attempts=0,
                ).id
            case C.GetBalance(customer_id):
                b = wallet.balance_in(conn, customer_id)
                return {
                    "balance": b.balance,
                    "available": b.available,
                    "pending_debits": b.pending_debits,
                    "month_used": b.month_used,
                    "monthly_cap": b.monthly_cap,
                    "month_room": b.month_room,
                    "balance_cap": b.balance_cap,
                    "tier": b.tier.value,
                }
            case C.GetHistory(customer_id, limit, offset):
                return [
                    _movement_view(m, customer_id)
                    for m in wallet.ledger.history(conn, customer_id, limit=limit, offset=offset)
                ]
            case C.GetMovement(customer_id, ref):
                m = wallet.ledger.find(conn, ref=ref)
                if m is None or customer_id not in (m.debit_customer_id, m.credit_customer_id):
                    return None
                return _movement_view(m, customer_id)
            case C.GetProfile(customer_id):
                c = cust.load_customer(conn, customer_id)
                return {
                    "name": c.full_name,
                    "phone": mask_phone(c.phone),
                    "email": c.email,
                    "birth_date": c.birth_date,
                    "tier": c.tier.value,
                    "status": c.status.value,
                    "since": c.created_at.date(),
                }
            case C.SetLanguage(language):
                self.conv.language = language
                if self.conv.customer_id is not None:
                    conn.execute(
                        update(customers)
                        .where(customers.c.id == self.conv.customer_id)
                        .values(language=language, updated_at=now)
                    )
                return language
            case C.FindRecipient(phone):
                found = cust.customer_by_phone(conn, phone)
                if found is None or found.status not in (Status.ACTIVE, Status.LOCKED):
                    return None
                return {
                    "customer_id": found.id,
                    "phone": mask_phone(found.phone),
                    "name": mask_name(found.first_name, found.last_name),
                }
            case C.RecentRecipients(customer_id):
                return _recent_recipients(conn, customer_id)
            case C.Transfer():
                moved = wallet.ledger.move(
                    conn,
                    MoveMoney(
                        key=cmd.key,
                        kind=Kind.TRANSFER,
                        source=CustomerParty(cmd.customer_id),
                        destination=CustomerParty(cmd.recipient_id),
                        amount=cmd.amount,
                        fee=cmd.fee,
                        actor=actor,
                        description=cmd.note[:200],
                    ),
                )
                if not moved.replayed:
                    sender = cust.load_customer(conn, cmd.customer_id)
                    self.notify(
                        cmd.recipient_id,
                        Say(
                            "notify.received",
                            {
                                "amount": Money(cmd.amount),
                                "ref": moved.ref,
                                "name": mask_name(sender.first_name, sender.last_name),
                                "note": cmd.note or "-",
                            },
                        ),
                    )
                recipient = cust.load_customer(conn, cmd.recipient_id)
                return {
                    "ref": moved.ref,
                    "at": moved.created_at,
                    "receipt": movement_receipt(
                        moved,
                        to_party=mask_name(recipient.first_name, recipient.last_name)
                        + " · "
                        + mask_phone(recipient.phone),
                        note=cmd.note,
                    ),
                }
            case C.GetTopupInfo(customer_id):
                c = cust.load_customer(conn, customer_id)
                money = wallet.settings.money
                return {
                    "banks": [{"name": b.name, "va": va_number(b, c.phone)} for b in money.banks],
                    "minimarts": list(money.minimarts),
                    "min_token": money.topup_token_min,
                }
            case C.IssueToken(purpose, customer_id, amount, key):
                token = wallet.tokens.issue_in(
                    conn,
                    purpose=purpose,
                    customer_id=customer_id,
                    amount=amount,
                    key=key,
                    actor=actor,
                )
                return {
                    "code": token.code,
                    "amount": token.amount,
                    "expires_at": token.expires_at,
                    "ref": token.movement.ref if token.movement else None,
                }
            case C.ListProducts(category, operator):
                return [
                    {
                        "code": p.code,
                        "name": p.name,
                        "price": 0 if p.postpaid else p.price + p.admin_fee,
                        "admin_fee": p.admin_fee,
                        "postpaid": p.postpaid,
                    }
                    for p in wallet.settings.bills.products
                    if p.category == category and (not operator or p.operator == operator)
                ]
            case C.HoldBill():
                held = wallet.ledger.move(
                    conn,
                    MoveMoney(
                        key=cmd.key,
                        kind=Kind.BILL,
                        source=CustomerParty(cmd.customer_id),
                        destination=BILLER_SETTLEMENT,
                        amount=cmd.amount,
                        fee=cmd.admin_fee,
                        hold=True,
                        actor=actor,
                        description=cmd.description[:200],
                        meta={"product": cmd.product, "customer_no": cmd.customer_no},
                    ),
                )
                return {"movement_id": held.id, "ref": held.ref}
            case C.SettleBill(movement_id, status, serial):
                return self._settle_bill(movement_id, status, serial, actor)
            case C.PayMerchant():
                paid = wallet.ledger.move(
                    conn,
                    MoveMoney(
                        key=cmd.key,
                        kind=Kind.QRIS,
                        source=CustomerParty(cmd.customer_id),
                        destination=SystemParty(SystemKind.MERCHANT, cmd.nmid),
                        amount=cmd.amount + cmd.tip,
                        actor=actor,
                        description=cmd.merchant_name,
                        meta={
                            "merchant": cmd.merchant_name,
                            "city": cmd.city,
                            "nmid": cmd.nmid,
                            "tip": cmd.tip,
                        },
                    ),
                )
                lines = [["merchant", f"{cmd.merchant_name}, {cmd.city}"], ["nmid", cmd.nmid]]
                receipt = movement_receipt(paid, to_party=cmd.merchant_name, lines=lines)
                return {"ref": paid.ref, "at": paid.created_at, "receipt": receipt}
            case C.ListBanks():
                return {
                    "banks": [{"code": b.code, "name": b.name} for b in wallet.settings.money.banks]
                }
            case C.HoldBankTransfer():
                held = wallet.ledger.move(
                    conn,
                    MoveMoney(
                        key=cmd.key,
                        kind=Kind.BANK_TRANSFER,
                        source=CustomerParty(cmd.customer_id),
                        destination=DISBURSEMENT_CLEARING,
                        amount=cmd.amount,
                        fee=cmd.fee,
                        hold=True,
                        actor=actor,
                        description=f"{cmd.account_name} {cmd.bank_code}-{cmd.account_no}"[:200],
                        meta={
                            "bank_code": cmd.bank_code,
                            "account_no": cmd.account_no,
                            "account_name": cmd.account_name,
                        },
                    ),
                )
                return {"movement_id": held.id, "ref": held.ref}
            case C.SettleBankTransfer(movement_id, status, serial):
                return self._settle_bill(movement_id, status, serial, actor)
            case C.OpenSupportRequest(kind, note):
                return conn.scalar(
                    support_requests.insert()
                    .values(
                        kind=kind,
                        customer_id=self.conv.customer_id,
                        channel=self.msg.channel,
                        chat_id=self.msg.chat_id,
                        status="open",
                        note=note[:500],
                        created_at=now,
                    )
                    .returning(support_requests.c.id)
                )
        raise TypeError(f"unknown command {cmd!r}")

    def _settle_bill(
        self, movement_id: int, status: str, serial: str | None, actor: str
    ) -> dict[str, Any]:
        ledger = self.engine.wallet.ledger
        if status in ("success", "failed"):
            try:
                ledger.settle(
                    self.conn, movement_id, post=status == "success", actor=f"biller:{actor}"
                )
            except InvalidTransition:
                pass  # the biller's callback or reconciliation settled it first
            record_serial(self.conn, movement_id, serial, status)
        m = ledger.get(self.conn, movement_id)
        return {
            "state": m.state.value,
            "ref": m.ref,
            "at": m.created_at,
            "receipt": bill_receipt(m, serial),
        }

    def notify(self, customer_id: int, message: Say) -> None:
        """Tell a customer something on every chat linked to them (in that chat's language)."""
        chats = self.conn.execute(
            select(
                conversations.c.channel, conversations.c.chat_id, conversations.c.language
            ).where(conversations.c.customer_id == customer_id)
        ).all()
        for channel, chat_id, language in chats:
            if (channel, chat_id) == (self.conv.channel, self.conv.chat_id):
                self.replies.append(message)
                continue
            self.conn.execute(
                outbox.insert().values(
                    channel=channel,
                    chat_id=chat_id,
                    payload=i18n.render(language, message),
                    created_at=self.now,
                    attempts=0,
                    next_attempt_at=self.now,
                )
            )
            self.other_chats.add((channel, chat_id))

    # ---------------------------------------------------------------- save
    def save(self) -> _Outcome:
        conn, conv, now = self.conn, self.conv, self.now
        payloads: list[dict[str, Any]] = []
        buttons: list[dict[str, str]] | None = None
        for reply in self.replies:
            if isinstance(reply, DeleteUserMessage):
                target = self.msg.platform_message_id or self.msg.message_id
                if target:
                    payloads.append({"type": "delete", "message_id": target})
                continue
            if isinstance(reply, SendReceipt):
                payloads.append(receipt_payload(dict(reply.receipt), conv.language))
                continue
            payload = i18n.render(conv.language, reply)
            if payload.get("buttons"):
                buttons = payload["buttons"]
            payloads.append(payload)
        state_json = self.state.model_dump(mode="json") if self.state is not None else None
        values = {
            "customer_id": conv.customer_id,
            "language": conv.language,
            "state": state_json,
            "state_at": now if state_json is not None else None,
            "buttons": buttons if buttons is not None else (conv.buttons if state_json else None),
            "updated_at": now,
        }
        if self.msg.message_id:  # a message from the customer (not the idle sweep)
            values["last_inbound_at"] = now
        if buttons is None and payloads:
            values["buttons"] = None
        if conv.exists:
            stmt = _UPDATE_CONVERSATION["last_inbound_at" in values]
            conn.execute(
                stmt,
                {
                    "w_ch": conv.channel,
                    "w_chat": conv.chat_id,
                    **{f"v_{k}": v for k, v in values.items()},
                },
            )
        else:
            conn.execute(
                conversations.insert().values(channel=conv.channel, chat_id=conv.chat_id, **values)
            )
        written: list[tuple[int, dict[str, Any]]] = []
        backlog = False
        if payloads:
            backlog = _has_backlog(conn, conv.channel, conv.chat_id)
            rows = [
                {
                    "channel": conv.channel,
                    "chat_id": conv.chat_id,
                    "payload": p,
                    "created_at": now,
                    "attempts": 0,
                    "next_attempt_at": now,
                }
                for p in payloads
            ]
            ids = conn.scalars(
                outbox.insert().returning(outbox.c.id, sort_by_parameter_order=True), rows
            ).all()
            written = list(zip((int(i) for i in ids), payloads, strict=True))
        return _Outcome(
            outbox=written,
            backlog=backlog,
            otps=self.otps,
            finished=self.finished,
            other_chats=sorted(self.other_chats),
            external=self.external,
            state_json=state_json,
        )


# ==================================================================== helpers


async def _payment(ref: str, call: Awaitable[PayResult]) -> Outcome:
    """A provider's answer to a payment. When the call itself fails the outcome is unknown:
    the hold stays pending and the reconciliation job asks the provider later."""
    try:
        paid = await call
    except BillerError:
        raise
    except Exception:
        log.exception("payment call failed", extra={"ref": ref})
        return Outcome(True, {"status": "pending", "serial": None})
    return Outcome(True, {"status": paid.status, "serial": paid.serial, "message": paid.message})


def _failed(err: WalletError) -> Outcome:
    detail = {k: v for k, v in vars(err).items() if not k.startswith("_")}
    return Outcome(False, error=err.code, detail=detail)


_UNSEEN = object()


def _could_be_pin(text: str) -> bool:
    digits = "".join(text.split())
    return len(digits) == 6 and digits.isascii() and digits.isdigit()


def _is_command(text: str) -> bool:
    return normalize_command(text) is not None


def _match_button(text: str, buttons: list[dict[str, str]] | None) -> str | None:
    """``2`` or a label typed back → that button's value (WhatsApp and console)."""
    if not buttons:
        return None
    typed = text.strip().lower().rstrip(".")
    # "2" picks option 2; "000001" is an OTP or an amount, never an option
    if typed.isdigit() and len(typed) <= 2 and typed[0] != "0" and int(typed) <= len(buttons):
        return buttons[int(typed) - 1]["value"]
    for b in buttons:
        if typed in (b["label"].lower(), b["value"].lower()):
            return b["value"]
    return None


def _pin_outcome(err: WalletError) -> PinEntered:
    code = err.code
    if code == "invalid_pin":
        return PinEntered("wrong", attempts_left=int(getattr(err, "attempts_left", 0)))
    if code == "pin_not_set":
        return PinEntered("not_set")
    return PinEntered("locked")


def _first_delivery(conn: Connection, channel: str, message_id: str, now: datetime) -> bool:
    if not message_id:
        return True
    stmt = _FIRST_DELIVERY[conn.dialect.name]
    row = conn.execute(stmt, {"channel": channel, "message_id": message_id, "at": now}).first()
    return row is not None


def _set_language(
    conn: Connection, channel: str, chat_id: str, language: str, now: datetime
) -> None:
    where = (conversations.c.channel == channel, conversations.c.chat_id == chat_id)
    if conn.execute(update(conversations).where(*where).values(language=language)).rowcount == 0:
        conn.execute(
            conversations.insert().values(
                channel=channel, chat_id=chat_id, language=language, updated_at=now
            )
        )


def _load_media(conn: Connection, media_id: str) -> bytes | None:
    row = conn.execute(select(media.c.data).where(media.c.id == media_id)).first()
    return None if row is None else bytes(row[0])


def _pin_hash(conn: Connection, customer_id: int) -> str | None:
    return conn.scalar(select(customers.c.pin_hash).where(customers.c.id == customer_id))


def _pending_for_chat(conn: Connection, channel: str, chat_id: str) -> list[tuple[int, Any]]:
    rows = conn.execute(
        select(outbox.c.id, outbox.c.payload)
        .where(outbox.c.channel == channel, outbox.c.chat_id == chat_id)
        .where(outbox.c.sent_at.is_(None), outbox.c.failed_at.is_(None))
        .order_by(outbox.c.id)
    )
    return [(int(r[0]), r[1]) for r in rows]


def _due_chats(conn: Connection, now: datetime) -> list[tuple[str, str]]:
    rows = conn.execute(
        select(outbox.c.channel, outbox.c.chat_id)
        .where(outbox.c.sent_at.is_(None), outbox.c.failed_at.is_(None))
        .where(outbox.c.next_attempt_at <= now)
        .distinct()
        .limit(500)
    )
    return [(r[0], r[1]) for r in rows]


def _has_backlog(conn: Connection, channel: str, chat_id: str) -> bool:
    return conn.execute(_BACKLOG, {"ch": channel, "chat": chat_id}).first() is not None


def _mark_delivery(
    conn: Connection, sent: list[int], failure: tuple[int, str] | None, now: datetime
) -> None:
    if sent:
        conn.execute(update(outbox).where(outbox.c.id.in_(sent)).values(sent_at=now))
    if failure is not None:
        _mark_failed(conn, failure[0], failure[1], now)


MAX_DELIVERY_ATTEMPTS = 8


def _mark_failed(conn: Connection, row_id: int, error: str, now: datetime) -> None:
    attempts = int(conn.scalar(select(outbox.c.attempts).where(outbox.c.id == row_id)) or 0) + 1
    values: dict[str, Any] = {
        "attempts": attempts,
        "error": error,
        "next_attempt_at": now + timedelta(seconds=2 ** min(attempts, 10)),
    }
    if attempts >= MAX_DELIVERY_ATTEMPTS:
        values["failed_at"] = now
    conn.execute(update(outbox).where(outbox.c.id == row_id).values(**values))


def _stale_conversations(conn: Connection, cutoff: datetime) -> list[tuple[str, str]]:
    rows = conn.execute(
        select(conversations.c.channel, conversations.c.chat_id)
        .where(conversations.c.state.is_not(None), conversations.c.state_at <= cutoff)
        .limit(500)
    )
    return [(r[0], r[1]) for r in rows]


def movement_receipt(
    m: Any,
    *,
    to_party: str = "",
    from_party: str = "",
    note: str = "",
    lines: list[list[str]] | None = None,
) -> dict[str, Any]:
    """The receipt of a transfer, top-up or cash-out."""
    rows = [*(lines or [])]
    if note:
        rows.append(["note", note])
    return {
        "kind": m.kind.value,
        "amount": m.amount,
        "fee": m.fee,
        "reference": m.ref,
        "created_at": m.created_at.isoformat(),
        "status": m.state.value,
        "to_party": to_party or None,
        "from_party": from_party or None,
        "lines": rows,
    }


def bill_receipt(m: Any, serial: str | None) -> dict[str, Any]:
    meta = dict(m.meta or {})
    if m.kind is Kind.BANK_TRANSFER:
        lines = [
            ["bank", str(meta.get("bank_code", ""))],
            ["account", f"{meta.get('account_no', '')} {meta.get('account_name', '')}"],
        ]
        if serial:
            lines.append(["serial", serial])
        return {
            "kind": "bank_transfer",
            "amount": m.amount,
            "fee": m.fee,
            "reference": m.ref,
            "created_at": m.created_at.isoformat(),
            "status": m.state.value,
            "to_party": str(meta.get("account_name", "")),
            "lines": lines,
        }
    lines = [["customer_id", str(meta.get("customer_no", ""))]]
    if serial:
        lines.append(["token" if "-" in serial else "serial", serial])
    return {
        "kind": "bill",
        "amount": m.amount,
        "fee": m.fee,
        "reference": m.ref,
        "created_at": m.created_at.isoformat(),
        "status": m.state.value,
        "to_party": m.description,
        "lines": lines,
    }


def receipt_payload(receipt: dict[str, Any], language: str) -> dict[str, Any]:
    """A receipt as an outbox payload: the adapters render the image at delivery."""
    from bot.receipts import receipt_text

    return {
        "type": "receipt",
        "receipt": receipt,
        "language": language,
        "text": receipt_text(receipt_from(receipt), language),
    }


def receipt_from(data: Mapping[str, Any]) -> Any:
    from bot.receipts import Receipt

    return Receipt(
        kind=str(data["kind"]),
        amount=int(data["amount"]),
        reference=str(data["reference"]),
        created_at=datetime.fromisoformat(str(data["created_at"])),
        status=str(data.get("status", "posted")),
        fee=int(data.get("fee", 0)),
        from_party=data.get("from_party"),
        to_party=data.get("to_party"),
        lines=tuple((str(a), str(b)) for a, b in data.get("lines") or ()),
    )


def notify_rows(
    conn: Connection,
    customer_id: int,
    message: Say | SendReceipt | tuple[Say | SendReceipt, ...],
    now: datetime,
    skip: tuple[str, str] | None = None,
) -> list[tuple[str, str]]:
    """Write ``message`` to the outbox of every chat linked to the customer (except
    ``skip``, returned for the caller to reply there itself). Returns the chats."""
    chats = conn.execute(
        select(conversations.c.channel, conversations.c.chat_id, conversations.c.language).where(
            conversations.c.customer_id == customer_id
        )
    ).all()
    found: list[tuple[str, str]] = []
    for channel, chat_id, language in chats:
        found.append((channel, chat_id))
        if (channel, chat_id) == skip:
            continue
        for one in message if isinstance(message, tuple) else (message,):
            payload = (
                receipt_payload(dict(one.receipt), language)
                if isinstance(one, SendReceipt)
                else i18n.render(language, one)
            )
            conn.execute(
                outbox.insert().values(
                    channel=channel,
                    chat_id=chat_id,
                    payload=payload,
                    created_at=now,
                    attempts=0,
                    next_attempt_at=now,
                )
            )
    return found


def _recent_recipients(conn: Connection, customer_id: int) -> list[dict[str, str]]:
    rows = conn.execute(
        select(
            customers.c.phone,
            customers.c.first_name,
            customers.c.last_name,
            func.max(movements.c.id).label("last"),
        )
        .select_from(movements.join(customers, customers.c.id == movements.c.credit_customer_id))
        .where(
            movements.c.debit_customer_id == customer_id, movements.c.kind == Kind.TRANSFER.value
        )
        .group_by(customers.c.phone, customers.c.first_name, customers.c.last_name)
        .order_by(func.max(movements.c.id).desc())
        .limit(3)
    ).all()
    return [{"phone": r.phone, "name": mask_name(r.first_name, r.last_name)} for r in rows]


def _movement_view(m: Any, customer_id: int) -> dict[str, Any]:
    incoming = m.credit_customer_id == customer_id
    return {
        "ref": m.ref,
        "kind": m.kind.value,
        "state": m.state.value,
        "amount": m.amount if incoming else m.amount + m.fee,
        "fee": m.fee,
        "incoming": incoming,
        "created_at": m.created_at,
        "description": m.description,
    }


def _aware(value: datetime) -> datetime:
    from wallet.clock import as_utc

    return as_utc(value)


def _as_date(value: Any) -> Any:
    from datetime import date

    if value is None or isinstance(value, date):
        return value
    return date.fromisoformat(str(value))


Deliver = Callable[[str, Mapping[str, Any]], Awaitable[None]]
