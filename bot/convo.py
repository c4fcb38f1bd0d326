"""Scripted conversations: a whole chat as YAML, run through the real engine.

The format is documented in docs/conversation-tests.md. ``run_script`` plays one script
on a database URL and returns the transcript; a mismatch raises ``ConvoFailure`` with
the transcript and an expected-vs-said diff. Used by pytest (tests/conversations) and by
``kaspro convo run FILES…``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import yaml

from bot.engine import Engine, Inbound
from storage.db import Database
from wallet.check import check_ledger
from wallet.clock import FrozenClock
from wallet.config import Settings
from wallet.masking import mask_phone
from wallet.model import Status, Tier
from wallet.phone import normalize_phone
from wallet.service import Wallet

START = datetime(2026, 12, 4, 3, 0, tzinfo=UTC)  # 10:00 WIB
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
        self.sent: list[tuple[str, str]] = []

    async def send_otp(self, phone: str, text: str, code: str) -> None:
        self.sent.append((phone, text))


@dataclass
class Player:
    engine: Engine
    wallet: Wallet
    clock: FrozenClock
    channel: RecordingChannel
    sms: RecordingOtpSender
    chat_id: str = "tester"
    transcript: list[str] = field(default_factory=list)
    vars: dict[str, str] = field(default_factory=dict)
    counter: int = 0
    last_replies: list[dict[str, Any]] = field(default_factory=list)

    async def send(self, **kwargs: Any) -> list[dict[str, Any]]:
        self.counter += 1
        before, sms_before = len(self.channel.sent), len(self.sms.sent)
        await self.engine.handle(Inbound("console", self.chat_id, f"m{self.counter}", **kwargs))
        for phone, body in self.sms.sent[sms_before:]:
            self.transcript.append(f"[SMS → {mask_phone(phone)}] {body}")
        replies = [p for _, p in self.channel.sent[before:]]
        for p in replies:
            self.transcript.append(_show(p))
        self.last_replies = replies
        return replies


def _show(payload: Mapping[str, Any]) -> str:
    if payload.get("type") == "delete":
        return "bot: (deletes the customer's message)"
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


async def run_script(script: Mapping[str, Any], settings: Settings) -> list[str]:
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
    player = Player(engine, wallet, clock, channel, sms)
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
    if "user" in step:
        text = _subst(str(step["user"]), p.vars)
        p.transcript.append(f"you: {text}")
        replies = await p.send(text=text)
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
        p.transcript.append(f"you: [presses {match[0]['label']}]")
        replies = await p.send(choice=match[0]["value"])
    elif "contact" in step:
        phone = _subst(str(step["contact"]), p.vars)
        p.transcript.append(f"you: [shares contact {phone}]")
        replies = await p.send(contact=phone)
    elif "photo" in step:
        p.transcript.append(f"you: [sends photo {step['photo']}]")
        replies = await p.send(photo_ref=str(step["photo"]))
    elif "advance" in step:
        p.clock.advance(_duration(step["advance"]))
        p.transcript.append(f"(time passes: {step['advance']})")
        before = len(p.channel.sent)
        await p.engine.sweep_idle()
        replies = [pl for _, pl in p.channel.sent[before:]]
        for pl in replies:
            p.transcript.append(_show(pl))
        p.last_replies = replies or p.last_replies
    elif "capture" in step:
        for name, spec in step["capture"].items():
            source = spec.get("from", "sms")
            texts = (
                [b for _, b in p.sms.sent]
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


def load_script(path: Path) -> dict[str, Any]:
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    if not isinstance(data, dict) or not isinstance(data.get("steps"), list):
        raise ValueError(f"{path}: a conversation needs a mapping with a 'steps' list")
    return data
