"""Account flows: registration, login on a new chat, PIN reset, change PIN."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date
from enum import StrEnum
from typing import TypeVar

from flows.commands import (
    EmailTaken,
    LinkChat,
    LookupPhone,
    Register,
    RequestOtp,
    SetPin,
    VerifyOtp,
)
from flows.core import (
    Button,
    Choice,
    Contact,
    Ctx,
    Done,
    Event,
    FlowState,
    NewPinEntered,
    PinConfirmEntered,
    PinEntered,
    Say,
    Start,
    Step,
    Text,
    When,
    say,
)
from flows.parsing import ParseError, parse_birth_date, parse_email, parse_otp, parse_phone
from wallet.clock import WIB
from wallet.masking import mask_phone

RESEND = Button("resend", "btn.resend_otp")
NAME_MAX = 50


def _otp_sent(phone: str, value: dict[str, object]) -> Say:
    return say(
        "otp.sent", (RESEND,), phone=mask_phone(phone), minutes=5, left=value.get("left_today", 0)
    )


def otp_error(error: str | None, detail: dict[str, object]) -> Say:
    """A failed OTP request or entry, explained."""
    if error == "otp_blocked":
        return say("otp.blocked", until=When(detail["until"]))  # type: ignore[arg-type]
    if error == "otp_rate_limited":
        return say("otp.rate_limited", retry_at=When(detail["retry_at"]))  # type: ignore[arg-type]
    if error == "otp_invalid":
        return say("otp.wrong", left=detail.get("attempts_left", 0))
    if error in ("otp_expired", "otp_not_requested"):
        return say("otp.expired", (RESEND,))
    return say("error.generic")


def _phone_input(event: Event) -> str | None:
    if isinstance(event, Contact):
        return event.phone
    if isinstance(event, Text):
        return event.text
    return None


def _name(text: str) -> str | None:
    name = " ".join(text.split())
    ok = 0 < len(name) <= NAME_MAX and all(ch.isalpha() or ch in " .'-" for ch in name)
    return name if ok and any(ch.isalpha() for ch in name) else None


# ====================================================================== registration


class Reg(StrEnum):
    PHONE = "phone"
    CHECKING_PHONE = "checking_phone"
    SENDING_OTP = "sending_otp"
    OTP = "otp"
    VERIFYING_OTP = "verifying_otp"
    FIRST = "first"
    LAST = "last"
    DOB = "dob"
    EMAIL = "email"
    CHECKING_EMAIL = "checking_email"
    PIN = "pin"
    PIN2 = "pin2"
    CREATING = "creating"


class RegisterState(FlowState):
    flow: str = "register"
    step: Reg = Reg.PHONE
    phone: str | None = None
    first_name: str = ""
    last_name: str = ""
    birth_date: date | None = None
    email: str | None = None


def register(state: RegisterState | None, event: Event, ctx: Ctx) -> Step:
    s = state or RegisterState()
    if isinstance(event, Start):
        if ctx.customer_id is not None:
            return Step((say("reg.already_linked"),))
        return Step((Say("reg.ask_phone", share_phone=True),), state=s)

    match s.step:
        case Reg.PHONE:
            raw = _phone_input(event)
            if raw is None:
                return Step((say("reg.ask_phone"),), state=s)
            try:
                phone = parse_phone(raw)
            except ParseError as err:
                return Step((say(f"phone.{err.code}"),), state=s)
            return Step(
                commands=(LookupPhone(phone),),
                state=s.model_copy(update={"step": Reg.CHECKING_PHONE, "phone": phone}),
            )
        case Reg.CHECKING_PHONE if isinstance(event, Done):
            if event.first.value is not None:
                buttons = (Button("login", "menu.login"), Button("reset_pin", "menu.reset_pin"))
                return Step((say("reg.phone_taken", buttons),), then_menu=False)
            assert s.phone
            return Step(
                commands=(RequestOtp(s.phone, "register"),),
                state=s.model_copy(update={"step": Reg.SENDING_OTP}),
            )
        case Reg.SENDING_OTP if isinstance(event, Done):
            out = event.first
            if not out.ok:
                return Step((otp_error(out.error, dict(out.detail)),))
            assert s.phone
            return Step(
                (_otp_sent(s.phone, out.value),), state=s.model_copy(update={"step": Reg.OTP})
            )
        case Reg.OTP:
            assert s.phone
            if isinstance(event, Choice) and event.value == "resend":
                return Step(
                    commands=(RequestOtp(s.phone, "register"),),
                    state=s.model_copy(update={"step": Reg.SENDING_OTP}),
                )
            if not isinstance(event, Text):
                return Step((say("otp.ask"),), state=s)
            try:
                code = parse_otp(event.text)
            except ParseError:
                return Step((say("otp.format"),), state=s)
            return Step(
                commands=(VerifyOtp(s.phone, "register", code),),
                state=s.model_copy(update={"step": Reg.VERIFYING_OTP}),
            )
        case Reg.VERIFYING_OTP if isinstance(event, Done):
            out = event.first
            if out.ok:
                return Step(
                    (say("reg.ask_first_name"),), state=s.model_copy(update={"step": Reg.FIRST})
                )
            if out.error == "otp_blocked":
                return Step((say("otp.failed_blocked", until=When(out.detail["until"])),))
            return Step(
                (otp_error(out.error, dict(out.detail)),),
                state=s.model_copy(update={"step": Reg.OTP}),
            )
        case Reg.FIRST | Reg.LAST:
            name = _name(event.text) if isinstance(event, Text) else None
            if s.step is Reg.LAST and isinstance(event, Text) and event.text.strip() == "-":
                name = ""
            if name is None:
                return Step((say("reg.name_invalid", max=NAME_MAX),), state=s)
            if s.step is Reg.FIRST:
                return Step(
                    (say("reg.ask_last_name"),),
                    state=s.model_copy(update={"step": Reg.LAST, "first_name": name}),
                )
            return Step(
                (say("reg.ask_birth_date"),),
                state=s.model_copy(update={"step": Reg.DOB, "last_name": name}),
            )
        case Reg.DOB:
            if not isinstance(event, Text):
                return Step((say("reg.ask_birth_date"),), state=s)
            try:
                dob = parse_birth_date(event.text, ctx.now.astimezone(WIB).date())
            except ParseError as err:
                return Step((say(f"dob.{err.code}"),), state=s)
            return Step(
                (say("reg.ask_email"),),
                state=s.model_copy(update={"step": Reg.EMAIL, "birth_date": dob}),
            )
        case Reg.EMAIL:
            if not isinstance(event, Text):
                return Step((say("reg.ask_email"),), state=s)
            try:
                email = parse_email(event.text)
            except ParseError:
                return Step((say("reg.email_invalid"),), state=s)
            return Step(
                commands=(EmailTaken(email),),
                state=s.model_copy(update={"step": Reg.CHECKING_EMAIL, "email": email}),
            )
        case Reg.CHECKING_EMAIL if isinstance(event, Done):
            if event.first.value:
                return Step(
                    (say("reg.email_taken"),),
                    state=s.model_copy(update={"step": Reg.EMAIL, "email": None}),
                )
            return _ask_new_pin(s.model_copy(update={"step": Reg.PIN}), "pin.ask_new")
        case Reg.PIN | Reg.PIN2:
            return _new_pin_steps(
                s,
                event,
                pin_step=Reg.PIN,
                confirm_step=Reg.PIN2,
                done=lambda st, pin_hash: Step(
                    commands=(
                        Register(
                            st.phone or "",
                            st.first_name,
                            st.last_name,
                            st.birth_date or date.min,
                            st.email or "",
                            ctx.language,
                            pin_hash,
                        ),
                    ),
                    state=st.model_copy(
                        update={"step": Reg.CREATING, "expects": None, "pending_pin_hash": None}
                    ),
                ),
            )
        case Reg.CREATING if isinstance(event, Done):
            out = event.first
            if out.ok:
                return Step((say("reg.done", name=s.first_name),))
            field = out.detail.get("field", "phone")
            return Step((say(f"reg.taken_{field}"),))
    return Step((say("flow.not_understood"),), state=s)


def _ask_new_pin(s: FlowState, key: str) -> Step:
    return Step((say(key),), state=s.model_copy(update={"expects": "new_pin"}))


S = TypeVar("S", bound=FlowState)


def _new_pin_steps(
    s: S,
    event: Event,
    *,
    pin_step: StrEnum,
    confirm_step: StrEnum,
    done: Callable[[S, str], Step],
) -> Step:
    """New PIN → re-enter → ``done(state, pin_hash)``; weak or mismatched → ask again."""
    if getattr(s, "step", None) == pin_step:
        if not isinstance(event, NewPinEntered):
            return _ask_new_pin(s, "pin.ask_new")
        if event.weak is not None or event.pin_hash is None:
            return _ask_new_pin(s, f"pin.weak.{event.weak or 'not_six_digits'}")
        return Step(
            (say("pin.ask_confirm"),),
            state=s.model_copy(
                update={
                    "step": confirm_step,
                    "expects": "confirm_pin",
                    "pending_pin_hash": event.pin_hash,
                }
            ),
        )
    if not isinstance(event, PinConfirmEntered):
        return Step((say("pin.ask_confirm"),), state=s)
    if not event.matches or not event.pin_hash:
        return _ask_new_pin(
            s.model_copy(update={"step": pin_step, "pending_pin_hash": None}), "pin.mismatch"
        )
    return done(s, event.pin_hash)


# ====================================================================== login & PIN reset


class Auth(StrEnum):
    PHONE = "phone"
    CHECKING_PHONE = "checking_phone"
    SENDING_OTP = "sending_otp"
    OTP = "otp"
    VERIFYING_OTP = "verifying_otp"
    PIN = "pin"  # login: the customer's PIN
    NEW_PIN = "new_pin"  # reset
    NEW_PIN2 = "new_pin2"
    SAVING = "saving"


class AuthState(FlowState):
    """Login on a new chat (phone → OTP → PIN) and PIN reset (phone → OTP → new PIN)."""

    flow: str = "login"
    step: Auth = Auth.PHONE
    phone: str | None = None
    customer_id: int | None = None


def login(state: AuthState | None, event: Event, ctx: Ctx) -> Step:
    return _auth(state or AuthState(flow="login"), event, ctx)


def reset_pin(state: AuthState | None, event: Event, ctx: Ctx) -> Step:
    return _auth(state or AuthState(flow="reset_pin"), event, ctx)


def _auth(s: AuthState, event: Event, ctx: Ctx) -> Step:
    reset = s.flow == "reset_pin"
    purpose = "reset_pin" if reset else "login"
    if isinstance(event, Start):
        if not reset and ctx.customer_id is not None:
            return Step((say("reg.already_linked"),))
        return Step((Say("auth.ask_phone", share_phone=True),), state=s)
    match s.step:
        case Auth.PHONE:
            raw = _phone_input(event)
            if raw is None:
                return Step((say("auth.ask_phone"),), state=s)
            try:
                phone = parse_phone(raw)
            except ParseError as err:
                return Step((say(f"phone.{err.code}"),), state=s)
            if ctx.customer_id is not None and ctx.phone and phone != ctx.phone:
                return Step((say("auth.not_this_account"),), state=s)
            return Step(
                commands=(LookupPhone(phone),),
                state=s.model_copy(update={"step": Auth.CHECKING_PHONE, "phone": phone}),
            )
        case Auth.CHECKING_PHONE if isinstance(event, Done):
            if event.first.value is None:
                return Step(
                    (say("auth.unknown_phone", (Button("register", "menu.register"),)),),
                    then_menu=False,
                )
            assert s.phone
            return Step(
                commands=(RequestOtp(s.phone, purpose),),
                state=s.model_copy(
                    update={"step": Auth.SENDING_OTP, "customer_id": event.first.value}
                ),
            )
        case Auth.SENDING_OTP if isinstance(event, Done):
            out = event.first
            if not out.ok:
                return Step((otp_error(out.error, dict(out.detail)),))
            assert s.phone
            return Step(
                (_otp_sent(s.phone, out.value),), state=s.model_copy(update={"step": Auth.OTP})
            )
        case Auth.OTP:
            assert s.phone
            if isinstance(event, Choice) and event.value == "resend":
                return Step(
                    commands=(RequestOtp(s.phone, purpose),),
                    state=s.model_copy(update={"step": Auth.SENDING_OTP}),
                )
            if not isinstance(event, Text):
                return Step((say("otp.ask"),), state=s)
            try:
                code = parse_otp(event.text)
            except ParseError:
                return Step((say("otp.format"),), state=s)
            return Step(
                commands=(VerifyOtp(s.phone, purpose, code),),
                state=s.model_copy(update={"step": Auth.VERIFYING_OTP}),
            )
        case Auth.VERIFYING_OTP if isinstance(event, Done):
            out = event.first
            if not out.ok:
                if out.error == "otp_blocked":
                    return Step((say("otp.failed_blocked", until=When(out.detail["until"])),))
                return Step(
                    (otp_error(out.error, dict(out.detail)),),
                    state=s.model_copy(update={"step": Auth.OTP}),
                )
            if reset:
                return _ask_new_pin(s.model_copy(update={"step": Auth.NEW_PIN}), "pin.ask_new")
            return Step(
                (say("auth.ask_pin"),),
                state=s.model_copy(update={"step": Auth.PIN, "expects": "pin"}),
            )
        case Auth.PIN:
            if not isinstance(event, PinEntered):
                return Step((say("auth.ask_pin"),), state=s)
            if event.outcome == "ok":
                assert s.customer_id is not None
                return Step(
                    commands=(LinkChat(s.customer_id),),
                    state=s.model_copy(update={"step": Auth.SAVING, "expects": None}),
                )
            return pin_problem(event, s)
        case Auth.NEW_PIN | Auth.NEW_PIN2:
            assert s.customer_id is not None
            cid = s.customer_id
            return _new_pin_steps(
                s,
                event,
                pin_step=Auth.NEW_PIN,
                confirm_step=Auth.NEW_PIN2,
                done=lambda st, pin_hash: Step(
                    commands=(SetPin(cid, pin_hash, reset=True), LinkChat(cid)),
                    state=st.model_copy(
                        update={"step": Auth.SAVING, "expects": None, "pending_pin_hash": None}
                    ),
                ),
            )
        case Auth.SAVING if isinstance(event, Done):
            return Step((say("pin.reset_done" if reset else "auth.done"),))
    return Step((say("flow.not_understood"),), state=s)


def pin_problem(event: PinEntered, s: FlowState) -> Step:
    """A PIN that did not pass: try again, or locked (point to PIN reset)."""
    if event.outcome == "wrong":
        return Step((say("pin.wrong", left=event.attempts_left),), state=s)
    if event.outcome == "format":
        return Step((say("pin.format"),), state=s)
    if event.outcome == "not_set":
        return Step(
            (say("pin.not_set", (Button("reset_pin", "menu.reset_pin"),)),), then_menu=False
        )
    return Step((say("pin.locked", (Button("reset_pin", "menu.reset_pin"),)),), then_menu=False)


# ====================================================================== change PIN


class Chg(StrEnum):
    OLD = "old"
    NEW = "new"
    NEW2 = "new2"
    SAVING = "saving"


class ChangePinState(FlowState):
    flow: str = "change_pin"
    step: Chg = Chg.OLD
    avoid_current_pin: bool = True


def change_pin(state: ChangePinState | None, event: Event, ctx: Ctx) -> Step:
    s = state or ChangePinState()
    if ctx.customer_id is None:
        return Step((say("flow.need_account"),))
    if isinstance(event, Start):
        return Step((say("pin.ask_old"),), state=s.model_copy(update={"expects": "pin"}))
    match s.step:
        case Chg.OLD:
            if not isinstance(event, PinEntered):
                return Step((say("pin.ask_old"),), state=s)
            if event.outcome != "ok":
                return pin_problem(event, s)
            return _ask_new_pin(s.model_copy(update={"step": Chg.NEW}), "pin.ask_new")
        case Chg.NEW | Chg.NEW2:
            cid = ctx.customer_id
            return _new_pin_steps(
                s,
                event,
                pin_step=Chg.NEW,
                confirm_step=Chg.NEW2,
                done=lambda st, pin_hash: Step(
                    commands=(SetPin(cid, pin_hash, reset=False),),
                    state=st.model_copy(
                        update={"step": Chg.SAVING, "expects": None, "pending_pin_hash": None}
                    ),
                ),
            )
        case Chg.SAVING if isinstance(event, Done):
            return Step((say("pin.changed"),))
    return Step((say("flow.not_understood"),), state=s)
