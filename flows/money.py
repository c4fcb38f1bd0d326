"""Money flows: top-up, wallet-to-wallet transfer, cash-out at a minimart.

Every money action ends in a summary, an explicit "yes", and the PIN. The idempotency key
of the movement is fixed when the summary is shown, so a retried delivery of the same
"yes"/PIN never moves money twice; after the idle timeout the flow is gone and a late
PIN moves nothing.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from flows.account import pin_problem
from flows.commands import (
    FindRecipient,
    GetBalance,
    GetTopupInfo,
    IssueToken,
    RecentRecipients,
    Transfer,
)
from flows.core import (
    Button,
    Choice,
    Ctx,
    Done,
    Event,
    FlowState,
    Money,
    PinEntered,
    Say,
    SendReceipt,
    Start,
    Step,
    Text,
    When,
    say,
)
from flows.parsing import ParseError, parse_amount, parse_phone, parse_yes_no

CONFIRM = (Button("yes", "btn.confirm"), Button("no", "btn.cancel"))
UPGRADE = (Button("faq", "menu.faq"),)


def _need_account(ctx: Ctx) -> Step | None:
    if ctx.customer_id is None:
        return Step(
            (
                say(
                    "flow.need_account",
                    (Button("register", "menu.register"), Button("login", "menu.login")),
                ),
            ),
            then_menu=False,
        )
    return None


def money_error(error: str | None, detail: Any) -> Say:
    """A refused money command, explained with what the customer can do about it."""
    d = dict(detail or {})
    if error == "insufficient_funds":
        return say(
            "money.insufficient",
            available=Money(int(d.get("available", 0))),
            needed=Money(int(d.get("needed", 0))),
        )
    if error == "balance_cap_exceeded":
        return say("money.cap", cap=Money(int(d.get("cap", 0))), room=Money(int(d.get("room", 0))))
    if error == "monthly_limit_exceeded":
        return say(
            "money.monthly", cap=Money(int(d.get("cap", 0))), room=Money(int(d.get("room", 0)))
        )
    if error == "tier_not_allowed":
        return say("money.premium_only", UPGRADE)
    if error == "account_not_active":
        return say("money.not_active")
    if error == "invalid_amount":
        return say("money.amount_range", maximum=Money(int(d.get("maximum", 0))))
    return say("error.generic")


def _yes(event: Event) -> bool | None:
    if isinstance(event, Choice):
        return event.value == "yes"
    if isinstance(event, Text):
        try:
            return parse_yes_no(event.text)
        except ParseError:
            return None
    return None


def _amount(event: Event) -> tuple[int | None, Say | None]:
    if not isinstance(event, Text | Choice):
        return None, say("money.ask_amount")
    raw = event.text if isinstance(event, Text) else event.value
    try:
        return parse_amount(raw), None
    except ParseError as err:
        return None, say(f"amount.{err.code}")


# ====================================================================== transfer


class Tx(StrEnum):
    CHECKING = "checking"
    RECENT = "recent"
    PHONE = "phone"
    FINDING = "finding"
    AMOUNT = "amount"
    NOTE = "note"
    CONFIRM = "confirm"
    PIN = "pin"
    SENDING = "sending"


class TransferState(FlowState):
    flow: str = "transfer"
    step: Tx = Tx.CHECKING
    recipient_id: int | None = None
    recipient_name: str = ""
    recipient_phone: str = ""
    amount: int = 0
    fee: int = 0
    note: str = ""
    key: str = ""


def transfer(state: TransferState | None, event: Event, ctx: Ctx) -> Step:
    if (refused := _need_account(ctx)) is not None:
        return refused
    assert ctx.customer_id is not None
    s = state or TransferState()
    if isinstance(event, Start):
        return Step(commands=(GetBalance(ctx.customer_id),), state=s)
    match s.step:
        case Tx.CHECKING if isinstance(event, Done):
            if event.first.value["tier"] != "premium":
                return Step((say("money.premium_only", UPGRADE),), then_menu=False)
            return Step(
                commands=(RecentRecipients(ctx.customer_id),),
                state=s.model_copy(update={"step": Tx.RECENT}),
            )
        case Tx.RECENT if isinstance(event, Done):
            recent = event.first.value or []
            buttons = tuple(
                Button(f"to:{r['phone']}", "btn.recipient", {"name": r["name"]}) for r in recent[:3]
            )
            return Step(
                (say("transfer.ask_phone", buttons),), state=s.model_copy(update={"step": Tx.PHONE})
            )
        case Tx.PHONE:
            raw = (
                event.value.removeprefix("to:")
                if isinstance(event, Choice)
                else event.text
                if isinstance(event, Text)
                else ""
            )
            try:
                phone = parse_phone(raw)
            except ParseError as err:
                return Step((say(f"phone.{err.code}"),), state=s)
            if phone == ctx.phone:
                return Step((say("transfer.not_self"),), state=s)
            return Step(
                commands=(FindRecipient(phone),), state=s.model_copy(update={"step": Tx.FINDING})
            )
        case Tx.FINDING if isinstance(event, Done):
            found = event.first.value
            if not found:
                return Step(
                    (say("transfer.unknown_recipient"),),
                    state=s.model_copy(update={"step": Tx.PHONE}),
                )
            return Step(
                (say("transfer.ask_amount", name=found["name"], phone=found["phone"]),),
                state=s.model_copy(
                    update={
                        "step": Tx.AMOUNT,
                        "recipient_id": found["customer_id"],
                        "recipient_name": found["name"],
                        "recipient_phone": found["phone"],
                    }
                ),
            )
        case Tx.AMOUNT:
            amount, problem = _amount(event)
            if amount is None:
                return Step((problem or say("money.ask_amount"),), state=s)
            return Step(
                (say("transfer.ask_note", (Button("-", "btn.no_note"),)),),
                state=s.model_copy(update={"step": Tx.NOTE, "amount": amount}),
            )
        case Tx.NOTE:
            note = (event.text.strip() if isinstance(event, Text) else "")[:100]
            note = "" if note == "-" else note
            fee = int(ctx.config.get("transfer_fee", 0))
            s = s.model_copy(
                update={
                    "step": Tx.CONFIRM,
                    "note": note,
                    "fee": fee,
                    "key": f"transfer:{ctx.channel}:{ctx.chat_id}:{ctx.message_id}",
                }
            )
            return Step((_transfer_summary(s),), state=s)
        case Tx.CONFIRM:
            answer = _yes(event)
            if answer is None:
                return Step((_transfer_summary(s),), state=s)
            if not answer:
                return Step((say("flow.cancelled"),))
            return Step(
                (say("money.ask_pin"),),
                state=s.model_copy(update={"step": Tx.PIN, "expects": "pin"}),
            )
        case Tx.PIN:
            if not isinstance(event, PinEntered):
                return Step((say("money.ask_pin"),), state=s)
            if event.outcome != "ok":
                return pin_problem(event, s)
            assert s.recipient_id is not None
            return Step(
                commands=(
                    Transfer(ctx.customer_id, s.recipient_id, s.amount, s.fee, s.note, s.key),
                ),
                state=s.model_copy(update={"step": Tx.SENDING, "expects": None}),
            )
        case Tx.SENDING if isinstance(event, Done):
            out = event.first
            if not out.ok:
                return Step((money_error(out.error, out.detail),))
            r = out.value
            return Step(
                (
                    say(
                        "transfer.done",
                        amount=Money(s.amount),
                        name=s.recipient_name,
                        ref=r["ref"],
                        when=When(r["at"]),
                        fee=Money(s.fee),
                        total=Money(s.amount + s.fee),
                    ),
                    SendReceipt(r["receipt"]),
                )
            )
    return Step((say("flow.not_understood"),), state=s)


def _transfer_summary(s: TransferState) -> Say:
    return say(
        "transfer.summary",
        CONFIRM,
        name=s.recipient_name,
        phone=s.recipient_phone,
        amount=Money(s.amount),
        fee=Money(s.fee),
        total=Money(s.amount + s.fee),
        note=s.note or "-",
    )


# ====================================================================== top-up


class Top(StrEnum):
    LOADING = "loading"
    SHOWN = "shown"
    AMOUNT = "amount"
    ISSUING = "issuing"


class TopupState(FlowState):
    flow: str = "topup"
    step: Top = Top.LOADING
    minimart: str = ""
    min_token: int = 10_000


def topup(state: TopupState | None, event: Event, ctx: Ctx) -> Step:
    if (refused := _need_account(ctx)) is not None:
        return refused
    assert ctx.customer_id is not None
    s = state or TopupState()
    if isinstance(event, Start):
        return Step(commands=(GetTopupInfo(ctx.customer_id),), state=s)
    match s.step:
        case Top.LOADING if isinstance(event, Done):
            info = event.first.value
            lines = "\n".join(f"• {b['name']}: {b['va']}" for b in info["banks"])
            buttons = (
                *(
                    Button(f"minimart:{m}", "btn.minimart", {"name": m.title()})
                    for m in info["minimarts"]
                ),
                Button("menu", "btn.menu"),
            )
            return Step(
                (say("topup.va", banks=lines), say("topup.minimart_offer", buttons)),
                state=s.model_copy(update={"step": Top.SHOWN, "min_token": info["min_token"]}),
            )
        case Top.SHOWN:
            if isinstance(event, Choice) and event.value.startswith("minimart:"):
                name = event.value.removeprefix("minimart:")
                return Step(
                    (say("topup.ask_amount", minimum=Money(s.min_token)),),
                    state=s.model_copy(update={"step": Top.AMOUNT, "minimart": name}),
                )
            return Step((say("topup.minimart_pick"),), state=s)
        case Top.AMOUNT:
            amount, problem = _amount(event)
            if amount is None:
                return Step((problem or say("money.ask_amount"),), state=s)
            if amount < s.min_token:
                return Step((say("topup.ask_amount", minimum=Money(s.min_token)),), state=s)
            key = f"topup-token:{ctx.channel}:{ctx.chat_id}:{ctx.message_id}"
            return Step(
                commands=(IssueToken("topup", ctx.customer_id, amount, key),),
                state=s.model_copy(update={"step": Top.ISSUING}),
            )
        case Top.ISSUING if isinstance(event, Done):
            out = event.first
            if not out.ok:
                return Step((money_error(out.error, out.detail),))
            t = out.value
            return Step(
                (
                    Say(
                        "topup.token",
                        {
                            "code": t["code"],
                            "amount": Money(t["amount"]),
                            "minimart": s.minimart.title(),
                            "until": When(t["expires_at"]),
                        },
                        protect=True,
                    ),
                )
            )
    return Step((say("flow.not_understood"),), state=s)


# ====================================================================== cash-out


class Out(StrEnum):
    CHECKING = "checking"
    AMOUNT = "amount"
    CONFIRM = "confirm"
    PIN = "pin"
    ISSUING = "issuing"


class CashoutState(FlowState):
    flow: str = "cashout"
    step: Out = Out.CHECKING
    amount: int = 0
    fee: int = 0
    key: str = ""
    options: tuple[int, ...] = ()


def cashout(
    state: CashoutState | None,
    event: Event,
    ctx: Ctx,
    denominations: tuple[int, ...] = (),
    fee: int = 0,
) -> Step:
    if (refused := _need_account(ctx)) is not None:
        return refused
    assert ctx.customer_id is not None
    s = state or CashoutState(
        options=tuple(ctx.config.get("cashout_denominations", ())),
        fee=int(ctx.config.get("cashout_fee", 0)),
    )
    if isinstance(event, Start):
        return Step(commands=(GetBalance(ctx.customer_id),), state=s)
    match s.step:
        case Out.CHECKING if isinstance(event, Done):
            if event.first.value["tier"] != "premium":
                return Step((say("money.premium_only", UPGRADE),), then_menu=False)
            buttons = tuple(Button(str(d), "btn.amount", {"amount": Money(d)}) for d in s.options)
            return Step(
                (say("cashout.ask_amount", buttons),),
                state=s.model_copy(update={"step": Out.AMOUNT}),
            )
        case Out.AMOUNT:
            amount, _ = _amount(event)
            if amount is None or amount not in s.options:
                buttons = tuple(
                    Button(str(d), "btn.amount", {"amount": Money(d)}) for d in s.options
                )
                return Step((say("cashout.ask_amount", buttons),), state=s)
            s = s.model_copy(
                update={
                    "step": Out.CONFIRM,
                    "amount": amount,
                    "key": f"cashout:{ctx.channel}:{ctx.chat_id}:{ctx.message_id}",
                }
            )
            return Step(
                (
                    say(
                        "cashout.summary",
                        CONFIRM,
                        amount=Money(amount),
                        fee=Money(s.fee),
                        total=Money(amount + s.fee),
                    ),
                ),
                state=s,
            )
        case Out.CONFIRM:
            answer = _yes(event)
            if answer is None:
                return Step((say("flow.yes_no", CONFIRM),), state=s)
            if not answer:
                return Step((say("flow.cancelled"),))
            return Step(
                (say("money.ask_pin"),),
                state=s.model_copy(update={"step": Out.PIN, "expects": "pin"}),
            )
        case Out.PIN:
            if not isinstance(event, PinEntered):
                return Step((say("money.ask_pin"),), state=s)
            if event.outcome != "ok":
                return pin_problem(event, s)
            return Step(
                commands=(IssueToken("cashout", ctx.customer_id, s.amount, s.key),),
                state=s.model_copy(update={"step": Out.ISSUING, "expects": None}),
            )
        case Out.ISSUING if isinstance(event, Done):
            out = event.first
            if not out.ok:
                return Step((money_error(out.error, out.detail),))
            t = out.value
            return Step(
                (
                    Say(
                        "cashout.token",
                        {
                            "code": t["code"],
                            "amount": Money(t["amount"]),
                            "until": When(t["expires_at"]),
                        },
                        protect=True,
                    ),
                )
            )
    return Step((say("flow.not_understood"),), state=s)
