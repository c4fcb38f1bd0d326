"""Every flow by name, its state type, and the home menu."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from flows import account, bank, bills, info, money, pay_qris
from flows.core import Button, Ctx, Event, FlowState, Step


@dataclass(frozen=True, slots=True)
class FlowSpec:
    name: str
    state_type: type[FlowState]
    step: Callable[[Any, Event, Ctx], Step]


FLOWS: dict[str, FlowSpec] = {
    spec.name: spec
    for spec in (
        FlowSpec("register", account.RegisterState, account.register),
        FlowSpec("login", account.AuthState, account.login),
        FlowSpec("reset_pin", account.AuthState, account.reset_pin),
        FlowSpec("change_pin", account.ChangePinState, account.change_pin),
        FlowSpec("balance", info.SimpleState, info.balance),
        FlowSpec("history", info.SimpleState, info.history),
        FlowSpec("profile", info.SimpleState, info.profile),
        FlowSpec("language", info.SimpleState, info.language),
        FlowSpec("faq", info.SimpleState, info.faq),
        FlowSpec("lost_phone", info.RequestState, info.lost_phone),
        FlowSpec("unregister", info.RequestState, info.unregister),
        FlowSpec("waiting_agent", info.AgentState, info.talk_to_agent),
        FlowSpec("topup", money.TopupState, money.topup),
        FlowSpec("transfer", money.TransferState, money.transfer),
        FlowSpec("cashout", money.CashoutState, money.cashout),
        FlowSpec("bills", bills.BillState, bills.bills),
        FlowSpec("bank_transfer", bank.BankState, bank.bank_transfer),
        FlowSpec("qris", pay_qris.QrisState, pay_qris.pay_qris),
    )
}

GUEST_MENU = ("register", "login", "reset_pin", "faq", "language", "waiting_agent")
CUSTOMER_MENU = (
    "balance",
    "topup",
    "bills",
    "qris",
    "transfer",
    "bank_transfer",
    "cashout",
    "history",
    "profile",
    "change_pin",
    "reset_pin",
    "faq",
    "language",
    "lost_phone",
    "unregister",
    "waiting_agent",
)


def menu_buttons(registered: bool) -> tuple[Button, ...]:
    names = CUSTOMER_MENU if registered else GUEST_MENU
    return tuple(Button(name, f"menu.{name}") for name in names)


def load_state(data: dict[str, Any]) -> FlowState:
    spec = FLOWS[data["flow"]]
    return spec.state_type.model_validate(data)
