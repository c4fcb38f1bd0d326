"""Bill payments (PPOB): phone credit, data, PLN token and bill, PDAM, internet & TV, BPJS.

Category → (number → operator → product) or (product → number) → inquiry at the biller
→ summary → yes → PIN → hold → pay → success posts and delivers the serial/token;
failure voids and explains; pending keeps the hold until the biller settles it.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from flows.account import pin_problem
from flows.commands import BillInquiry, CallBiller, HoldBill, ListProducts, SettleBill
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
from flows.money import CONFIRM, _need_account, _yes, money_error
from flows.parsing import ParseError, parse_phone

CATEGORIES = ("pulsa", "data", "pln_token", "pln_bill", "pdam", "internet_tv", "bpjs")
BY_PHONE = ("pulsa", "data")
OPERATORS = {
    "telkomsel": ("811", "812", "813", "821", "822", "823", "852", "853"),
    "byu": ("851",),
    "indosat": ("814", "815", "816", "855", "856", "857", "858"),
    "xl": ("817", "818", "819", "859", "877", "878"),
    "axis": ("831", "832", "833", "838"),
    "tri": ("895", "896", "897", "898", "899"),
    "smartfren": ("881", "882", "883", "884", "885", "886", "887", "888", "889"),
}


def operator_of(phone: str) -> str | None:
    national = phone.removeprefix("+62")
    return next((op for op, pre in OPERATORS.items() if national[:3] in pre), None)


class Bl(StrEnum):
    CATEGORY = "category"
    NUMBER = "number"
    LISTING = "listing"
    PRODUCT = "product"
    INQUIRING = "inquiring"
    CONFIRM = "confirm"
    PIN = "pin"
    HOLDING = "holding"
    PAYING = "paying"
    SETTLING = "settling"


class BillState(FlowState):
    flow: str = "bills"
    step: Bl = Bl.CATEGORY
    category: str = ""
    operator: str = ""
    customer_no: str = ""
    product: str = ""
    product_name: str = ""
    bill_name: str = ""
    period: str = ""
    amount: int = 0
    admin_fee: int = 0
    key: str = ""
    movement_id: int | None = None
    ref: str = ""
    pay_status: str = ""
    serial: str = ""


def bills(state: BillState | None, event: Event, ctx: Ctx) -> Step:
    if (refused := _need_account(ctx)) is not None:
        return refused
    assert ctx.customer_id is not None
    s = state or BillState()
    if isinstance(event, Start):
        buttons = tuple(Button(c, f"bill.cat.{c}") for c in CATEGORIES)
        return Step((say("bill.ask_category", buttons),), state=s)
    match s.step:
        case Bl.CATEGORY:
            cat = event.value if isinstance(event, Choice) else ""
            if cat not in CATEGORIES:
                buttons = tuple(Button(c, f"bill.cat.{c}") for c in CATEGORIES)
                return Step((say("bill.ask_category", buttons),), state=s)
            s = s.model_copy(update={"category": cat})
            if cat in BY_PHONE:
                return Step(
                    (say("bill.ask_phone", (Button("self", "btn.my_number"),)),),
                    state=s.model_copy(update={"step": Bl.NUMBER}),
                )
            return Step(
                commands=(ListProducts(cat),), state=s.model_copy(update={"step": Bl.LISTING})
            )
        case Bl.NUMBER:
            return _number(s, event, ctx)
        case Bl.LISTING if isinstance(event, Done):
            products: list[dict[str, Any]] = event.first.value or []
            if not products:
                return Step((say("bill.no_products"),))
            if len(products) == 1 and not s.customer_no:
                p = products[0]
                return _ask_number(
                    s.model_copy(update={"product": p["code"], "product_name": p["name"]})
                )
            buttons = tuple(
                Button(
                    p["code"],
                    "bill.product_price" if p["price"] else "bill.product",
                    {"name": p["name"], "price": Money(p["price"])},
                )
                for p in products
            )
            return Step(
                (say("bill.ask_product", buttons),), state=s.model_copy(update={"step": Bl.PRODUCT})
            )
        case Bl.PRODUCT:
            if not isinstance(event, Choice):
                return Step((say("bill.pick_product"),), state=s)
            s = s.model_copy(update={"product": event.value})
            if s.customer_no:
                return Step(
                    commands=(BillInquiry(s.product, s.customer_no),),
                    state=s.model_copy(update={"step": Bl.INQUIRING}),
                )
            return _ask_number(s)
        case Bl.INQUIRING if isinstance(event, Done):
            out = event.first
            if not out.ok:
                if out.detail.get("reason") == "not_found":
                    return Step(
                        (say("bill.not_found"),),
                        state=s.model_copy(update={"step": Bl.NUMBER, "customer_no": ""}),
                    )
                return Step((say("bill.unavailable"),))
            b = out.value
            s = s.model_copy(
                update={
                    "step": Bl.CONFIRM,
                    "bill_name": b["name"],
                    "period": b["period"],
                    "amount": b["amount"],
                    "admin_fee": b["admin_fee"],
                    "product_name": b.get("product_name") or s.product_name,
                }
            )
            return Step((_summary(s),), state=s)
        case Bl.CONFIRM:
            answer = _yes(event)
            if answer is None:
                return Step((_summary(s),), state=s)
            if not answer:
                return Step((say("flow.cancelled"),))
            # the movement's idempotency key: fixed by the customer's "yes" message
            key = f"bill:{ctx.channel}:{ctx.chat_id}:{ctx.message_id}"
            return Step(
                (say("money.ask_pin"),),
                state=s.model_copy(update={"step": Bl.PIN, "expects": "pin", "key": key}),
            )
        case Bl.PIN:
            if not isinstance(event, PinEntered):
                return Step((say("money.ask_pin"),), state=s)
            if event.outcome != "ok":
                return pin_problem(event, s)
            desc = f"{s.product_name} {s.customer_no}"
            return Step(
                commands=(
                    HoldBill(
                        ctx.customer_id,
                        s.product,
                        s.customer_no,
                        s.amount,
                        s.admin_fee,
                        s.key,
                        desc,
                    ),
                ),
                state=s.model_copy(update={"step": Bl.HOLDING, "expects": None}),
            )
        case Bl.HOLDING if isinstance(event, Done):
            out = event.first
            if not out.ok:
                return Step((money_error(out.error, out.detail),))
            held = out.value
            return Step(
                (say("bill.processing"),),
                commands=(CallBiller(held["ref"], s.product, s.customer_no, s.amount),),
                state=s.model_copy(
                    update={
                        "step": Bl.PAYING,
                        "movement_id": held["movement_id"],
                        "ref": held["ref"],
                    }
                ),
            )
        case Bl.PAYING if isinstance(event, Done):
            paid: dict[str, Any] = (
                event.first.value if event.first.ok else {"status": "pending", "serial": None}
            )
            status, serial = str(paid["status"]), paid.get("serial")
            assert s.movement_id is not None
            return Step(
                commands=(SettleBill(s.movement_id, status, serial),),
                state=s.model_copy(
                    update={"step": Bl.SETTLING, "pay_status": status, "serial": serial or ""}
                ),
            )
        case Bl.SETTLING if isinstance(event, Done):
            return Step(tuple(_result(s, event)))
    return Step((say("flow.not_understood"),), state=s)


def _number(s: BillState, event: Event, ctx: Ctx) -> Step:
    if s.category in BY_PHONE:
        raw = (
            ctx.phone
            if isinstance(event, Choice) and event.value == "self"
            else (event.text if isinstance(event, Text) else "")
        )
        try:
            phone = parse_phone(raw or "")
        except ParseError as err:
            return Step((say(f"phone.{err.code}"),), state=s)
        operator = operator_of(phone)
        if operator is None:
            return Step((say("bill.unknown_operator"),), state=s)
        return Step(
            commands=(ListProducts(s.category, operator),),
            state=s.model_copy(
                update={
                    "step": Bl.LISTING,
                    "operator": operator,
                    "customer_no": "0" + phone.removeprefix("+62"),
                }
            ),
        )
    digits = "".join((event.text if isinstance(event, Text) else "").split()).replace("-", "")
    low, high = (11, 12) if s.category in ("pln_token", "pln_bill") else (5, 20)
    if not (digits.isascii() and digits.isdigit() and low <= len(digits) <= high):
        return Step((say(f"bill.number_format.{_number_kind(s.category)}"),), state=s)
    return Step(
        commands=(BillInquiry(s.product, digits),),
        state=s.model_copy(update={"step": Bl.INQUIRING, "customer_no": digits}),
    )


def _number_kind(category: str) -> str:
    return "meter" if category in ("pln_token", "pln_bill") else "customer"


def _ask_number(s: BillState) -> Step:
    return Step(
        (say(f"bill.ask_number.{_number_kind(s.category)}", product=s.product_name),),
        state=s.model_copy(update={"step": Bl.NUMBER}),
    )


def _summary(s: BillState) -> Say:
    return say(
        "bill.summary",
        CONFIRM,
        product=s.product_name,
        number=s.customer_no,
        name=s.bill_name,
        period=s.period or "-",
        amount=Money(s.amount),
        fee=Money(s.admin_fee),
        total=Money(s.amount + s.admin_fee),
    )


def _result(s: BillState, event: Done) -> list[Say | SendReceipt]:
    out = event.first
    if s.pay_status == "success" and out.ok:
        key = "bill.success_token" if s.category == "pln_token" else "bill.success"
        return [
            say(
                key,
                product=s.product_name,
                number=s.customer_no,
                serial=s.serial,
                total=Money(s.amount + s.admin_fee),
                ref=s.ref,
            ),
            SendReceipt(out.value["receipt"]),
        ]
    if s.pay_status == "failed":
        return [say("bill.failed", total=Money(s.amount + s.admin_fee), ref=s.ref)]
    return [say("bill.pending", ref=s.ref)]
