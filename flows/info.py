"""Read-only and request flows: balance, history, profile, language, FAQ, support requests."""

from __future__ import annotations

from collections.abc import Callable
from enum import StrEnum
from typing import Any

from flows.commands import (
    GetBalance,
    GetHistory,
    GetMovement,
    GetProfile,
    OpenSupportRequest,
    SetLanguage,
)
from flows.core import (
    Button,
    Choice,
    Ctx,
    Day,
    Done,
    Event,
    FlowState,
    Money,
    Say,
    Start,
    Step,
    Term,
    Text,
    When,
    say,
)
from flows.parsing import ParseError, parse_yes_no

PAGE = 5


class Wait(StrEnum):
    LOADING = "loading"
    SHOWN = "shown"
    CONFIRM = "confirm"
    SAVING = "saving"


class SimpleState(FlowState):
    step: Wait = Wait.LOADING
    offset: int = 0


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


# ---------------------------------------------------------------- balance & limits


def balance(state: SimpleState | None, event: Event, ctx: Ctx) -> Step:
    if (refused := _need_account(ctx)) is not None:
        return refused
    assert ctx.customer_id is not None
    if isinstance(event, Start):
        return Step(commands=(GetBalance(ctx.customer_id),), state=SimpleState(flow="balance"))
    if isinstance(event, Done) and event.first.ok:
        b: dict[str, Any] = event.first.value
        replies = [
            say(
                "balance.show",
                balance=Money(b["balance"]),
                available=Money(b["available"]),
                held=Money(b["pending_debits"]),
                month_used=Money(b["month_used"]),
                monthly_cap=Money(b["monthly_cap"]),
                month_room=Money(b["month_room"]),
                balance_cap=Money(b["balance_cap"]),
                tier=Term(f"tier.{b['tier']}"),
            )
        ]
        if b["tier"] == "regular":
            replies.append(
                say(
                    "balance.premium_benefits",
                    premium_cap=Money(20_000_000),
                    premium_monthly=Money(40_000_000),
                )
            )
        return Step(tuple(replies))
    return Step((say("error.generic"),))


# ---------------------------------------------------------------- history


def history(state: SimpleState | None, event: Event, ctx: Ctx) -> Step:
    if (refused := _need_account(ctx)) is not None:
        return refused
    assert ctx.customer_id is not None
    s = state or SimpleState(flow="history")
    if isinstance(event, Start):
        return Step(commands=(GetHistory(ctx.customer_id, PAGE + 1, 0),), state=s)
    if isinstance(event, Done) and s.step is Wait.LOADING:
        items: list[dict[str, Any]] = event.first.value or []
        if not items and s.offset == 0:
            return Step((say("history.empty"),))
        page, more = items[:PAGE], len(items) > PAGE
        lines = [
            say(
                "history.line",
                n=s.offset + i + 1,
                when=When(m["created_at"]),
                what=Term(f"kind.{m['kind']}"),
                sign="+" if m["incoming"] else "-",
                amount=Money(m["amount"]),
                state=Term(f"state.{m['state']}"),
                ref=m["ref"],
            )
            for i, m in enumerate(page)
        ]
        buttons = tuple(
            Button(f"ref:{m['ref']}", "btn.detail", {"n": s.offset + i + 1})
            for i, m in enumerate(page)
        )
        if more:
            buttons += (Button("more", "btn.more"),)
        buttons += (Button("menu", "btn.menu"),)
        return Step(
            (say("history.title"), *lines, say("history.pick", buttons)),
            state=s.model_copy(update={"step": Wait.SHOWN}),
        )
    if s.step is Wait.SHOWN:
        value = (
            event.value
            if isinstance(event, Choice)
            else (event.text.strip() if isinstance(event, Text) else "")
        )
        if value == "more":
            offset = s.offset + PAGE
            return Step(
                commands=(GetHistory(ctx.customer_id, PAGE + 1, offset),),
                state=s.model_copy(update={"step": Wait.LOADING, "offset": offset}),
            )
        ref = value.removeprefix("ref:").upper()
        if ref.startswith("KP"):
            return Step(
                commands=(GetMovement(ctx.customer_id, ref),),
                state=s.model_copy(update={"step": Wait.CONFIRM}),
            )
        return Step((say("history.pick"),), state=s)
    if isinstance(event, Done) and s.step is Wait.CONFIRM:
        m = event.first.value
        if m is None:
            return Step(
                (say("history.not_found"),), state=s.model_copy(update={"step": Wait.SHOWN})
            )
        return Step(
            (
                say(
                    "history.detail",
                    when=When(m["created_at"]),
                    what=Term(f"kind.{m['kind']}"),
                    amount=Money(m["amount"]),
                    fee=Money(m["fee"]),
                    state=Term(f"state.{m['state']}"),
                    ref=m["ref"],
                    description=m["description"] or "-",
                ),
            )
        )
    return Step((say("flow.not_understood"),), state=s)


# ---------------------------------------------------------------- profile


def profile(state: SimpleState | None, event: Event, ctx: Ctx) -> Step:
    if (refused := _need_account(ctx)) is not None:
        return refused
    assert ctx.customer_id is not None
    if isinstance(event, Start):
        return Step(commands=(GetProfile(ctx.customer_id),), state=SimpleState(flow="profile"))
    if isinstance(event, Done) and event.first.ok:
        p: dict[str, Any] = event.first.value
        return Step(
            (
                say(
                    "profile.show",
                    name=p["name"],
                    phone=p["phone"],
                    email=p["email"] or "-",
                    birth_date=Day(p["birth_date"]) if p["birth_date"] else "-",
                    tier=Term(f"tier.{p['tier']}"),
                    status=Term(f"status.{p['status']}"),
                    since=Day(p["since"]),
                ),
            )
        )
    return Step((say("error.generic"),))


# ---------------------------------------------------------------- language


LANG_BUTTONS = (Button("id", "lang.id"), Button("en", "lang.en"))


def language(state: SimpleState | None, event: Event, ctx: Ctx) -> Step:
    s = state or SimpleState(flow="language", step=Wait.SHOWN)
    if isinstance(event, Start):
        return Step((say("lang.ask", LANG_BUTTONS),), state=s)
    if s.step is Wait.SHOWN:
        value = (
            event.value
            if isinstance(event, Choice)
            else (event.text.strip().lower() if isinstance(event, Text) else "")
        )
        lang = {
            "id": "id",
            "indonesia": "id",
            "bahasa indonesia": "id",
            "en": "en",
            "english": "en",
            "inggris": "en",
        }.get(value)
        if lang is None:
            return Step((say("lang.ask", LANG_BUTTONS),), state=s)
        return Step(commands=(SetLanguage(lang),), state=s.model_copy(update={"step": Wait.SAVING}))
    if isinstance(event, Done):
        return Step((say("lang.done"),))
    return Step((say("flow.not_understood"),), state=s)


# ---------------------------------------------------------------- FAQ

FAQ_TOPICS = ("qris", "tiers", "topup", "lost_phone", "unregister", "register", "pin")


def faq(state: SimpleState | None, event: Event, ctx: Ctx) -> Step:
    s = state or SimpleState(flow="faq", step=Wait.SHOWN)
    buttons = (*(Button(t, f"faq.q.{t}") for t in FAQ_TOPICS), Button("menu", "btn.menu"))
    if isinstance(event, Start):
        return Step((say("faq.ask", buttons),), state=s)
    value = event.value if isinstance(event, Choice) else ""
    if value in FAQ_TOPICS:
        params: dict[str, Any] = {}
        if value == "tiers":
            params = {
                "regular_cap": Money(2_000_000),
                "regular_monthly": Money(20_000_000),
                "premium_cap": Money(20_000_000),
                "premium_monthly": Money(40_000_000),
            }
        return Step((Say(f"faq.a.{value}", params), say("faq.more", buttons)), state=s)
    return Step((say("faq.ask", buttons),), state=s)


# ---------------------------------------------------------------- requests for a person


class RequestState(FlowState):
    step: Wait = Wait.CONFIRM
    kind: str = "lost_phone"


YES_NO = (Button("yes", "btn.yes"), Button("no", "btn.no"))


def _request(kind: str) -> Callable[[RequestState | None, Event, Ctx], Step]:
    def flow(state: RequestState | None, event: Event, ctx: Ctx) -> Step:
        if (refused := _need_account(ctx)) is not None:
            return refused
        s = state or RequestState(flow=kind, kind=kind)
        if isinstance(event, Start):
            return Step((say(f"request.{kind}.confirm", YES_NO),), state=s)
        if s.step is Wait.CONFIRM:
            answer: bool | None = None
            if isinstance(event, Choice):
                answer = event.value == "yes"
            elif isinstance(event, Text):
                try:
                    answer = parse_yes_no(event.text)
                except ParseError:
                    return Step((say("flow.yes_no", YES_NO),), state=s)
            if not answer:
                return Step((say("flow.cancelled"),))
            return Step(
                commands=(OpenSupportRequest(kind),),
                state=s.model_copy(update={"step": Wait.SAVING}),
            )
        if isinstance(event, Done):
            return Step((say(f"request.{kind}.recorded", ref=event.first.value),))
        return Step((say("flow.not_understood"),), state=s)

    return flow


lost_phone = _request("lost_phone")
unregister = _request("unregister")


# ---------------------------------------------------------------- talk to a person


class AgentState(FlowState):
    flow: str = "waiting_agent"
    step: Wait = Wait.SAVING
    request_id: int | None = None


def talk_to_agent(state: AgentState | None, event: Event, ctx: Ctx) -> Step:
    s = state or AgentState()
    if isinstance(event, Start):
        return Step(commands=(OpenSupportRequest("agent"),), state=s)
    if isinstance(event, Done):
        return Step(
            (say("agent.waiting", ref=event.first.value),),
            state=s.model_copy(update={"step": Wait.SHOWN, "request_id": event.first.value}),
        )
    # Until an agent takes over (the support console), messages are kept for them.
    return Step((say("agent.still_waiting"),), state=s)
