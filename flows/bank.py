"""Transfer to a bank account (Premium): bank → account → name inquiry → amount →
summary with fee → yes → PIN → hold → disbursement → posted, voided, or pending."""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from flows.account import pin_problem
from flows.commands import (
    AccountInquiry,
    CallDisbursement,
    GetBalance,
    HoldBankTransfer,
    ListBanks,
    SettleBankTransfer,
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
    say,
)
from flows.money import CONFIRM, UPGRADE, _amount, _need_account, _yes, money_error


class Bk(StrEnum):
    CHECKING = "checking"
    BANK = "bank"
    ACCOUNT = "account"
    INQUIRING = "inquiring"
    AMOUNT = "amount"
    CONFIRM = "confirm"
    PIN = "pin"
    HOLDING = "holding"
    SENDING = "sending"
    SETTLING = "settling"


class BankState(FlowState):
    flow: str = "bank_transfer"
    step: Bk = Bk.CHECKING
    bank_code: str = ""
    bank_name: str = ""
    account_no: str = ""
    account_name: str = ""
    amount: int = 0
    fee: int = 0
    key: str = ""
    movement_id: int | None = None
    ref: str = ""
    status: str = ""
    banks: tuple[tuple[str, str], ...] = ()


def bank_transfer(state: BankState | None, event: Event, ctx: Ctx) -> Step:
    if (refused := _need_account(ctx)) is not None:
        return refused
    assert ctx.customer_id is not None
    s = state or BankState(fee=int(ctx.config.get("bank_transfer_fee", 0)))
    if isinstance(event, Start):
        return Step(commands=(GetBalance(ctx.customer_id),), state=s)
    match s.step:
        case Bk.CHECKING if isinstance(event, Done) and s.banks == ():
            if not event.first.ok:
                return Step((say("error.generic"),))
            if "tier" in (event.first.value or {}):
                if event.first.value["tier"] != "premium":
                    return Step((say("money.premium_only", UPGRADE),), then_menu=False)
                return Step(commands=(ListBanks(),), state=s)
            banks = tuple((b["code"], b["name"]) for b in event.first.value["banks"])
            s = s.model_copy(update={"step": Bk.BANK, "banks": banks})
            return Step((_ask_bank(s),), state=s)
        case Bk.BANK:
            code = event.value if isinstance(event, Choice) else (
                event.text.strip() if isinstance(event, Text) else "")
            names = dict(s.banks)
            by_name = {n.lower(): c for c, n in s.banks}
            code = code if code in names else by_name.get(code.lower(), "")
            if not code:
                return Step((_ask_bank(s),), state=s)
            return Step((say("bank.ask_account", bank=names[code]),),
                        state=s.model_copy(update={"step": Bk.ACCOUNT, "bank_code": code,
                                                   "bank_name": names[code]}))
        case Bk.ACCOUNT:
            digits = "".join((event.text if isinstance(event, Text) else "").split())
            digits = digits.replace("-", "")
            if not (digits.isascii() and digits.isdigit() and 6 <= len(digits) <= 20):
                return Step((say("bank.account_format"),), state=s)
            return Step(commands=(AccountInquiry(s.bank_code, digits),),
                        state=s.model_copy(update={"step": Bk.INQUIRING, "account_no": digits}))
        case Bk.INQUIRING if isinstance(event, Done):
            out = event.first
            if not out.ok:
                if out.detail.get("reason") == "not_found":
                    return Step((say("bank.not_found"),),
                                state=s.model_copy(update={"step": Bk.ACCOUNT}))
                return Step((say("bank.unavailable"),))
            name = str(out.value["name"])
            return Step((say("bank.ask_amount", name=name, bank=s.bank_name,
                             account=s.account_no),),
                        state=s.model_copy(update={"step": Bk.AMOUNT, "account_name": name}))
        case Bk.AMOUNT:
            amount, problem = _amount(event)
            if amount is None:
                return Step((problem or say("money.ask_amount"),), state=s)
            s = s.model_copy(update={"step": Bk.CONFIRM, "amount": amount})
            return Step((_summary(s),), state=s)
        case Bk.CONFIRM:
            answer = _yes(event)
            if answer is None:
                return Step((_summary(s),), state=s)
            if not answer:
                return Step((say("flow.cancelled"),))
            key = f"bank:{ctx.channel}:{ctx.chat_id}:{ctx.message_id}"
            return Step((say("money.ask_pin"),),
                        state=s.model_copy(update={"step": Bk.PIN, "expects": "pin", "key": key}))
        case Bk.PIN:
            if not isinstance(event, PinEntered):
                return Step((say("money.ask_pin"),), state=s)
            if event.outcome != "ok":
                return pin_problem(event, s)
            return Step(commands=(HoldBankTransfer(ctx.customer_id, s.bank_code, s.account_no,
                                                   s.account_name, s.amount, s.fee, s.key),),
                        state=s.model_copy(update={"step": Bk.HOLDING, "expects": None}))
        case Bk.HOLDING if isinstance(event, Done):
            out = event.first
            if not out.ok:
                return Step((money_error(out.error, out.detail),))
            held = out.value
            return Step((say("bill.processing"),),
                        commands=(CallDisbursement(held["ref"], s.bank_code, s.account_no,
                                                   s.amount),),
                        state=s.model_copy(update={"step": Bk.SENDING,
                                                   "movement_id": held["movement_id"],
                                                   "ref": held["ref"]}))
        case Bk.SENDING if isinstance(event, Done):
            sent: dict[str, Any] = (event.first.value if event.first.ok
                                    else {"status": "pending", "serial": None})
            status = str(sent["status"])
            assert s.movement_id is not None
            return Step(commands=(SettleBankTransfer(s.movement_id, status, sent.get("serial")),),
                        state=s.model_copy(update={"step": Bk.SETTLING, "status": status}))
        case Bk.SETTLING if isinstance(event, Done):
            total = Money(s.amount + s.fee)
            if s.status == "success" and event.first.ok:
                return Step((say("bank.done", amount=Money(s.amount), name=s.account_name,
                                 bank=s.bank_name, account=s.account_no, total=total,
                                 ref=s.ref),
                             SendReceipt(event.first.value["receipt"])))
            if s.status == "failed":
                return Step((say("bank.failed", total=total, ref=s.ref),))
            return Step((say("bank.pending", ref=s.ref),))
    return Step((say("flow.not_understood"),), state=s)


def _ask_bank(s: BankState) -> Say:
    return say("bank.ask_bank", tuple(Button(code, "bank.option", {"name": name, "code": code})
                                      for code, name in s.banks))


def _summary(s: BankState) -> Say:
    return say("bank.summary", CONFIRM, bank=s.bank_name, account=s.account_no,
               name=s.account_name, amount=Money(s.amount), fee=Money(s.fee),
               total=Money(s.amount + s.fee))
