"""Scripted conversations: a whole chat as YAML, run through the real engine.

The format is documented in docs/conversation-tests.md. ``run_script`` plays one script
on a database URL and returns the transcript; a mismatch raises ``ConvoFailure`` with
the transcript and an expected-vs-said diff. Used by pytest (tests/conversations) and by
``kaspro convo run FILES…``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import yaml

from bot.billing import Billing
from bot.engine import Engine, Inbound
from bot.media import MediaStore
from bot.partners import Partners, signed_request
from storage.db import Database
from storage.schema import conversations
from wallet.check import check_ledger
from wallet.clock import FrozenClock
from wallet.config import Settings
from wallet.customers import NewCustomer
from wallet.masking import mask_phone
from wallet.model import CustomerParty, Kind, MoveMoney, Status, SystemKind, SystemParty, Tier
from wallet.phone import normalize_phone
from wallet.service import Wallet
from wallet.topup import bank_by_code, va_number

START = datetime(2026, 12, 4, 3, 0, tzinfo=UTC)  # 10:00 WIB
PARTNER_SECRET = b"conversation-tests-partner"
_DURATION = re.compile(r"^(\d+)\s*([smhd])$")


class ConvoFailure(AssertionError):
    def __init__(self, message: str, transcript: list[str], expected: str = "", said: str = ""):
        self.transcript = transcript
        self.expected = expected
        self.said = said
        lines = [message, "", "transcript:", *("  " + t for t in transcript)]
        if expected or said:
            lines += [
                "",
                "expected:",
                "  " + expected,
                "bot said:",
                *("  " + s for s in said.splitlines()),
            ]
        super().__init__("\n".join(lines))


class RecordingChannel:
    def __init__(self) -> None:
        self.sent: list[tuple[str, dict[str, Any]]] = []

    async def send(self, chat_id: str, payload: Mapping[str, Any]) -> None:
        self.sent.append((chat_id, dict(payload)))


class RecordingOtpSender:
    def __init__(self) -> None:
        self.sent: list[tuple[str, str, str]] = []

    async def send_otp(self, phone: str, text: str, code: str) -> None:
        self.sent.append((phone, text, code))


@dataclass
class Player:
    engine: Engine
    wallet: Wallet
    clock: FrozenClock
    channel: RecordingChannel
    sms: RecordingOtpSender
    partners: Partners
    media: MediaStore
    base_dir: Path = field(default_factory=Path)
    chat_id: str = "tester"
    transcript: list[str] = field(default_factory=list)
    vars: dict[str, str] = field(default_factory=dict)
    counter: int = 0
    last_replies: list[dict[str, Any]] = field(default_factory=list)
    others: list[dict[str, Any]] = field(default_factory=list)  # everything sent, any chat

    async def send(self, chat: str | None = None, **kwargs: Any) -> list[dict[str, Any]]:
        self.counter += 1
        chat = chat or self.chat_id
        mark = self.mark()
        await self.engine.handle(Inbound("console", chat, f"m{self.counter}", **kwargs))
        return self.collect(mark, chat)

    def mark(self) -> tuple[int, int]:
        return len(self.channel.sent), len(self.sms.sent)

    def collect(self, mark: tuple[int, int], chat: str | None = None) -> list[dict[str, Any]]:
        """Transcript what the bot said since ``mark``; the replies to ``chat`` are returned."""
        before, sms_before = mark
        chat = chat or self.chat_id
        self.others = []
        for phone, body, _code in self.sms.sent[sms_before:]:
            self.transcript.append(f"[SMS → {mask_phone(phone)}] {body}")
        replies = []
        for to, p in self.channel.sent[before:]:
            self.others.append({**p, "_to": to})
            if to == chat:
                replies.append(p)
                self.transcript.append(_show(p) if chat == self.chat_id else f"({to}) " + _show(p))
            else:
                self.transcript.append(f"({to}) " + _show(p))
        self.last_replies = replies
        return replies


def _show(payload: Mapping[str, Any]) -> str:
    if payload.get("type") == "delete":
        return "bot: (deletes the customer's message)"
    if payload.get("type") == "receipt":
        return "bot: [receipt image] " + str(payload.get("text", "")).replace("\n", " | ")
    out = "bot: " + str(payload.get("text", "")).replace("\n", "\n     ")
    for n, b in enumerate(payload.get("buttons") or [], start=1):
        out += f"\n     [{n}] {b['label']}"
    return out


def _subst(value: str, variables: Mapping[str, str]) -> str:
    return re.sub(r"\{(\w+)\}", lambda m: variables.get(m.group(1), m.group(0)), value)


def _duration(text: str) -> timedelta:
    m = _DURATION.match(str(text).strip())
    if not m:
        raise ValueError(f"advance: expected e.g. 30s, 6m, 24h, 2d — got {text!r}")
    n, unit = int(m.group(1)), m.group(2)
    return timedelta(**{{"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}[unit]: n})


async def run_script(
    script: Mapping[str, Any], settings: Settings, base_dir: Path | None = None
) -> list[str]:
    """Play ``script`` on ``settings.database_url`` (a fresh, migrated database)."""
    clock = FrozenClock(START)
    db = Database.from_url(settings.database_url, pool_size=4)
    wallet = Wallet(db, settings, clock, secret_key=b"conversation-tests")
    channel, sms = RecordingChannel(), RecordingOtpSender()
    engine = Engine(
        wallet,
        idle_minutes=settings.idle_timeout_minutes,
        channels={"console": channel},
        otp_sender=sms,
    )
    player = Player(
        engine,
        wallet,
        clock,
        channel,
        sms,
        partners=Partners(wallet, engine, secret=PARTNER_SECRET),
        media=MediaStore(db, b"conversation-tests"),
        base_dir=base_dir or Path(),
    )
    try:
        if script.get("language"):
            await engine.set_language("console", player.chat_id, str(script["language"]))
        for number, step in enumerate(script.get("steps") or [], start=1):
            await _play(player, step, number)
    finally:
        await db.dispose()
    return player.transcript


async def _play(p: Player, step: Mapping[str, Any], number: int) -> None:
    where = f"step {number}"
    chat = step.get("as")
    who = f"you ({chat})" if chat else "you"
    if "user" in step:
        text = _subst(str(step["user"]), p.vars)
        p.transcript.append(f"{who}: {text}")
        replies = await p.send(chat, text=text)
    elif "button" in step:
        label = _subst(str(step["button"]), p.vars)
        offered = [b for r in p.last_replies for b in r.get("buttons") or []]
        match = [b for b in offered if label in (b["label"], b["value"])]
        if not match:
            raise ConvoFailure(
                f"{where}: no button {label!r} was offered",
                p.transcript,
                label,
                ", ".join(b["label"] for b in offered),
            )
        p.transcript.append(f"{who}: [presses {match[0]['label']}]")
        replies = await p.send(chat, choice=match[0]["value"])
    elif "contact" in step:
        phone = _subst(str(step["contact"]), p.vars)
        p.transcript.append(f"{who}: [shares contact {phone}]")
        replies = await p.send(chat, contact=phone)
    elif "photo" in step:
        p.transcript.append(f"{who}: [sends photo {step['photo']}]")
        replies = await p.send(chat, photo_ref=await _photo_ref(p, str(step["photo"]), chat))
    elif "advance" in step:
        p.clock.advance(_duration(step["advance"]))
        p.transcript.append(f"(time passes: {step['advance']})")
        mark, offered = p.mark(), p.last_replies
        await p.engine.sweep_idle()
        await p.partners.expire_tokens()
        await Billing(p.wallet, p.engine).reconcile()
        await p.wallet.expire_holds()
        replies = p.collect(mark, chat)
        if not replies:  # nothing new: the buttons offered before are still there
            p.last_replies = offered
    elif "capture" in step:
        for name, spec in step["capture"].items():
            source = spec.get("from", "sms")
            texts = (
                [b for _, b, _ in p.sms.sent]
                if source == "sms"
                else [str(r.get("text", "")) for r in p.last_replies]
            )
            found = None
            for body in reversed(texts):
                m = re.search(spec["regex"], body)
                if m:
                    found = m.group(1) if m.groups() else m.group(0)
                    break
            if found is None:
                raise ConvoFailure(
                    f"{where}: nothing to capture as {name!r}",
                    p.transcript,
                    spec["regex"],
                    "\n".join(texts[-3:]),
                )
            p.vars[name] = found
        return
    elif "expect" in step:
        await _check_effects(p, step["expect"], where)
        return
    elif "given_customer" in step:
        await _given_customer(p, step["given_customer"])
        return
    elif "bank_topup" in step or "redeem" in step:
        replies = await _partner(p, step, where, chat)
    else:
        raise ValueError(f"{where}: unknown step {dict(step)!r}")
    if "bot" in step:
        _check_replies(p, step["bot"], replies, where)


def _check_replies(p: Player, expected: Any, replies: list[dict[str, Any]], where: str) -> None:
    said = "\n".join(_show(r) for r in replies) or "(nothing)"
    if expected in (None, "none", "nothing", []):
        if replies:
            raise ConvoFailure(f"{where}: expected no reply", p.transcript, "(nothing)", said)
        return
    items = expected if isinstance(expected, list) else [expected]
    pos = 0
    for item in items:
        spec = {"contains": item} if isinstance(item, str) else dict(item)
        for key in ("contains", "regex", "exact"):
            if key in spec:
                spec[key] = _subst(str(spec[key]), p.vars)
        if "to" in spec:  # a message to another chat (a notification)
            to = spec.pop("to")
            if not any(r["_to"] == to and _matches(r, spec) for r in p.others):
                shown = "\n".join(f"({r['_to']}) {_show(r)}" for r in p.others) or "(nothing)"
                raise ConvoFailure(
                    f"{where}: chat {to} was not told what was expected",
                    p.transcript,
                    _describe(spec),
                    shown,
                )
            continue
        while pos < len(replies) and not _matches(replies[pos], spec):
            pos += 1
        if pos == len(replies):
            raise ConvoFailure(
                f"{where}: the bot did not say what was expected",
                p.transcript,
                _describe(spec),
                said,
            )
        # the next expectation may match this same reply or a later one


def _matches(reply: Mapping[str, Any], spec: Mapping[str, Any]) -> bool:
    if spec.get("deleted"):
        return reply.get("type") == "delete"
    if spec.get("receipt"):
        text = str(reply.get("text", ""))
        return reply.get("type") == "receipt" and str(spec.get("contains", "")) in text
    if reply.get("type") != "text":
        return False
    text = str(reply.get("text", ""))
    if "contains" in spec and spec["contains"] not in text:
        return False
    if "regex" in spec and not re.search(spec["regex"], text):
        return False
    if "exact" in spec and spec["exact"] != text:
        return False
    if "buttons" in spec:
        labels = [b["label"] for b in reply.get("buttons") or []]
        if labels != list(spec["buttons"]):
            return False
    return True


def _describe(spec: Mapping[str, Any]) -> str:
    return ", ".join(f"{k}: {v!r}" for k, v in spec.items())


async def _check_effects(p: Player, expect: Mapping[str, Any], where: str) -> None:
    wallet = p.wallet
    if "customer" in expect:
        spec = expect["customer"]
        customer = await wallet.customer_by_phone(_subst(str(spec["phone"]), p.vars))
        if spec.get("exists", True) is False:
            if customer is not None:
                raise ConvoFailure(
                    f"{where}: a customer exists", p.transcript, "no customer", str(customer)
                )
        else:
            if customer is None:
                raise ConvoFailure(
                    f"{where}: no customer with that phone", p.transcript, str(spec), "none"
                )
            checks = {"tier": (customer.tier, Tier), "status": (customer.status, Status)}
            for key, (actual, enum) in checks.items():
                if key in spec and actual is not enum(spec[key]):
                    raise ConvoFailure(
                        f"{where}: customer {key}", p.transcript, str(spec[key]), actual.value
                    )
            for key in ("first_name", "last_name", "email", "language"):
                if key in spec and getattr(customer, key) != spec[key]:
                    raise ConvoFailure(
                        f"{where}: customer {key}",
                        p.transcript,
                        str(spec[key]),
                        str(getattr(customer, key)),
                    )
            if "balance" in spec:
                bal = await wallet.balance(customer.id)
                if bal.balance != int(spec["balance"]):
                    raise ConvoFailure(
                        f"{where}: balance", p.transcript, str(spec["balance"]), str(bal.balance)
                    )
    if expect.get("ledger_clean"):
        report = await wallet.db.read(check_ledger, wallet.ledger.limits, wallet.clock)
        if not report.ok:
            raise ConvoFailure(f"{where}: ledger check", p.transcript, "clean", report.render())
    if "otp_blocked" in expect:
        phone = normalize_phone(_subst(str(expect["otp_blocked"]), p.vars))
        if await wallet.otp.blocked_until(phone) is None:
            raise ConvoFailure(f"{where}: number not blocked", p.transcript, "blocked", "free")


async def _given_customer(p: Player, spec: Mapping[str, Any]) -> None:
    """A customer who already exists (registered elsewhere), e.g. a transfer's recipient;
    with ``chat:`` their own chat is linked to them, so they see notifications."""
    customer = await p.wallet.register(
        NewCustomer(
            str(spec["phone"]),
            str(spec.get("first_name", "Budi")),
            str(spec.get("last_name", "")),
            email=spec.get("email"),
        ),
        pin=str(spec.get("pin", "864209")),
        actor="script",
    )
    if spec.get("tier"):
        await p.wallet.set_tier(customer.id, Tier(spec["tier"]), actor="script:kyc")
    if spec.get("balance"):
        await p.wallet.move(
            MoveMoney(
                key=f"script-topup-{customer.id}",
                kind=Kind.TOPUP,
                source=SystemParty(SystemKind.TOPUP_FLOAT, "va:014"),
                destination=CustomerParty(customer.id),
                amount=int(spec["balance"]),
                actor="script",
            )
        )
    if spec.get("chat"):
        await p.wallet.db.write(_link_chat, str(spec["chat"]), customer.id, p.clock.now())
    p.transcript.append(f"(given: customer {spec['phone']} {spec.get('tier', 'regular')})")


def _link_chat(conn: Any, chat_id: str, customer_id: int, now: datetime) -> None:
    conn.execute(
        conversations.insert().values(
            channel="console",
            chat_id=chat_id,
            customer_id=customer_id,
            language="id",
            updated_at=now,
        )
    )


async def _partner(
    p: Player, step: Mapping[str, Any], where: str, chat: str | None
) -> list[dict[str, Any]]:
    """A bank or a minimart calls us, signed, through the same code as the server."""
    if "bank_topup" in step:
        spec = step["bank_topup"]
        phone = normalize_phone(_subst(str(spec["phone"]), p.vars))
        bank = bank_by_code(p.wallet.settings, str(spec.get("bank", "014")))
        payload: dict[str, Any] = {
            "bank_code": bank.code,
            "va_number": va_number(bank, phone),
            "amount": int(spec["amount"]),
            "reference": _subst(str(spec.get("reference", f"REF{p.counter}")), p.vars),
        }
        kind, label = "va", f"bank {bank.name} pays {payload['amount']} into the VA"
    else:
        spec = step["redeem"]
        payload = {
            "partner": spec.get("partner", "indomaret"),
            "token": _subst(str(spec["token"]), p.vars),
            "amount": int(spec["amount"]),
            "reference": _subst(str(spec.get("reference", f"POS{p.counter}")), p.vars),
        }
        kind, label = "redeem", f"{payload['partner']} redeems token {payload['token']}"
    p.counter += 1
    mark = p.mark()
    body, ts, sig = signed_request(PARTNER_SECRET, payload)
    answer = await p.partners.handle(kind, body, ts, sig)
    p.transcript.append(
        f"({label}: {answer.status} {answer.body.get('status')}"
        f"{' ' + str(answer.body.get('reason')) if 'reason' in answer.body else ''})"
    )
    expected_status = spec.get("status")
    if expected_status is not None and int(expected_status) != answer.status:
        raise ConvoFailure(
            f"{where}: partner call answered {answer.status}",
            p.transcript,
            str(expected_status),
            json.dumps(answer.body),
        )
    return p.collect(mark, chat)


async def _photo_ref(p: Player, name: str, chat: str | None) -> str:
    """A photo file next to the script (or a generated one) stored like a channel photo."""
    if name.startswith(("rejected:", "media:")):
        return name
    path = Path(name) if Path(name).is_absolute() else p.base_dir / name
    data = path.read_bytes()
    return "media:" + await p.media.put(
        data,
        "image/png" if data[:4] == b"\x89PNG" else "image/jpeg",
        channel="console",
        chat_id=chat or p.chat_id,
        now=p.clock.now(),
    )


def load_script(path: Path) -> dict[str, Any]:
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    if not isinstance(data, dict) or not isinstance(data.get("steps"), list):
        raise ValueError(f"{path}: a conversation needs a mapping with a 'steps' list")
    return data
