"""Pay a merchant by QRIS: a photo of the QR code (or its text pasted) → merchant, city,
NMID → amount (static codes) and tip (when the code asks) → summary → yes → PIN → paid."""

from __future__ import annotations

from enum import StrEnum

from flows.account import pin_problem
from flows.commands import DecodeQr, PayMerchant
from flows.core import (
    Ctx,
    Done,
    Event,
    FlowState,
    Money,
    Photo,
    PinEntered,
    Say,
    SendReceipt,
    Start,
    Step,
    Text,
    say,
)
from flows.money import CONFIRM, _amount, _need_account, _yes, money_error
from flows.qris import QrisError, QrisPayment, parse_qris


class Q(StrEnum):
    CODE = "code"
    DECODING = "decoding"
    AMOUNT = "amount"
    TIP = "tip"
    CONFIRM = "confirm"
    PIN = "pin"
    PAYING = "paying"


class QrisState(FlowState):
    flow: str = "qris"
    step: Q = Q.CODE
    payload: str = ""
    merchant: str = ""
    city: str = ""
    nmid: str = ""
    amount: int = 0
    tip: int = 0
    tip_mode: str = ""
    key: str = ""


def looks_like_qris(text: str) -> bool:
    return text.strip().startswith("000201")


def pay_qris(state: QrisState | None, event: Event, ctx: Ctx) -> Step:
    if (refused := _need_account(ctx)) is not None:
        return refused
    assert ctx.customer_id is not None
    s = state or QrisState()
    if isinstance(event, Start):
        if event.arg:  # started by a photo or a pasted code from the menu
            return _code(s, event.arg, ctx)
        return Step((say("qris.ask_code"),), state=s)
    match s.step:
        case Q.CODE:
            if isinstance(event, Photo):
                return _code(s, "photo:" + event.ref, ctx)
            if isinstance(event, Text):
                return _code(s, event.text, ctx)
            return Step((say("qris.ask_code"),), state=s)
        case Q.DECODING if isinstance(event, Done):
            found = [p for p in (event.first.value or []) if isinstance(p, str)]
            if not event.first.ok or not found:
                return Step((say("qris.no_code"),), state=s.model_copy(update={"step": Q.CODE}))
            return _parsed(s, found[0], ctx)
        case Q.AMOUNT:
            amount, problem = _amount(event)
            if amount is None:
                return Step((problem or say("money.ask_amount"),), state=s)
            s = s.model_copy(update={"amount": amount})
            return _after_amount(s)
        case Q.TIP:
            tip: int | None = 0
            if not (isinstance(event, Text) and event.text.strip() in ("0", "-")):
                tip, problem = _amount(event)
                if tip is None:
                    return Step((problem or say("qris.ask_tip"),), state=s)
            s = s.model_copy(update={"tip": tip, "step": Q.CONFIRM})
            return Step((_summary(s),), state=s)
        case Q.CONFIRM:
            answer = _yes(event)
            if answer is None:
                return Step((_summary(s),), state=s)
            if not answer:
                return Step((say("flow.cancelled"),))
            key = f"qris:{ctx.channel}:{ctx.chat_id}:{ctx.message_id}"
            return Step(
                (say("money.ask_pin"),),
                state=s.model_copy(update={"step": Q.PIN, "expects": "pin", "key": key}),
            )
        case Q.PIN:
            if not isinstance(event, PinEntered):
                return Step((say("money.ask_pin"),), state=s)
            if event.outcome != "ok":
                return pin_problem(event, s)
            return Step(
                commands=(
                    PayMerchant(
                        ctx.customer_id, s.nmid, s.merchant, s.city, s.amount, s.tip, s.key
                    ),
                ),
                state=s.model_copy(update={"step": Q.PAYING, "expects": None}),
            )
        case Q.PAYING if isinstance(event, Done):
            out = event.first
            if not out.ok:
                return Step((money_error(out.error, out.detail),))
            return Step(
                (
                    say(
                        "qris.paid",
                        amount=Money(s.amount + s.tip),
                        merchant=s.merchant,
                        ref=out.value["ref"],
                    ),
                    SendReceipt(out.value["receipt"]),
                )
            )
    return Step((say("flow.not_understood"),), state=s)


def _code(s: QrisState, raw: str, ctx: Ctx) -> Step:
    if raw.startswith("photo:"):
        ref = raw.removeprefix("photo:")
        if not ref.startswith("media:"):
            return Step((say("qris.no_code"),), state=s)
        return Step(commands=(DecodeQr(ref),), state=s.model_copy(update={"step": Q.DECODING}))
    return _parsed(s, raw, ctx)


def _parsed(s: QrisState, payload: str, ctx: Ctx) -> Step:
    try:
        qr: QrisPayment = parse_qris(payload.strip())
    except QrisError as err:
        return Step((say(f"qris.error.{err.code}"),), state=s.model_copy(update={"step": Q.CODE}))
    s = s.model_copy(
        update={
            "payload": qr.payload,
            "merchant": qr.merchant_name,
            "city": qr.city,
            "nmid": qr.nmid or qr.merchant_name,
            "tip_mode": qr.tip or "",
        }
    )
    if qr.amount is None:
        return Step(
            (say("qris.ask_amount", merchant=qr.merchant_name, city=qr.city, nmid=qr.nmid or "-"),),
            state=s.model_copy(update={"step": Q.AMOUNT}),
        )
    return _after_amount(s.model_copy(update={"amount": qr.amount}), qr)


def _after_amount(s: QrisState, qr: QrisPayment | None = None) -> Step:
    qr = qr or parse_qris(s.payload)
    if qr.tip == "prompt":
        return Step((say("qris.ask_tip"),), state=s.model_copy(update={"step": Q.TIP}))
    s = s.model_copy(update={"tip": qr.fee_for(s.amount), "step": Q.CONFIRM})
    return Step((_summary(s),), state=s)


def _summary(s: QrisState) -> Say:
    return say(
        "qris.summary",
        CONFIRM,
        merchant=s.merchant,
        city=s.city,
        nmid=s.nmid,
        amount=Money(s.amount),
        tip=Money(s.tip),
        total=Money(s.amount + s.tip),
    )
