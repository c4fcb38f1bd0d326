"""The vocabulary of flows: events in, replies and commands out. Pure: no I/O.

A flow step is ``step(state, event, ctx) -> Step``. The engine feeds it the customer's
message (already turned into an event), or the outcome of the commands the previous step
asked for, and does every bit of I/O itself.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

# ------------------------------------------------------------------ events


@dataclass(frozen=True, slots=True)
class Start:
    """The flow was just entered (from the menu or a command)."""

    arg: str | None = None


@dataclass(frozen=True, slots=True)
class Text:
    text: str


@dataclass(frozen=True, slots=True)
class Choice:
    """A button press (Telegram), or a numbered option typed on WhatsApp/console."""

    value: str


@dataclass(frozen=True, slots=True)
class Contact:
    """A shared contact (Telegram's "share my phone number")."""

    phone: str


@dataclass(frozen=True, slots=True)
class Photo:
    ref: str
    mime: str = ""
    size: int = 0


@dataclass(frozen=True, slots=True)
class PinEntered:
    """The customer typed their PIN; the engine checked it against the stored hash.

    ``outcome``: ok | wrong | locked | format | not_set.
    """

    outcome: str
    attempts_left: int = 0


@dataclass(frozen=True, slots=True)
class NewPinEntered:
    """The customer typed a new PIN. ``weak`` is why it is refused (or None); ``pin_hash``
    is its keyed fingerprint until confirmed (the clear digits never reach the state)."""

    weak: str | None
    pin_hash: str | None


@dataclass(frozen=True, slots=True)
class PinConfirmEntered:
    """The re-typed PIN, compared by the engine against the state's ``pending_pin_hash``."""

    matches: bool
    format_ok: bool = True
    pin_hash: str | None = None  # argon2id hash of the confirmed PIN, for storage


@dataclass(frozen=True, slots=True)
class Outcome:
    """What one command did: ``ok`` with a value, or an error code with its details."""

    ok: bool
    value: Any = None
    error: str | None = None
    detail: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Done:
    """The outcomes of the commands the previous step asked for, in order."""

    outcomes: tuple[Outcome, ...]

    @property
    def first(self) -> Outcome:
        return self.outcomes[0]


Event = (
    Start | Text | Choice | Contact | Photo | PinEntered | NewPinEntered | PinConfirmEntered | Done
)

# ------------------------------------------------------------------ replies


@dataclass(frozen=True, slots=True)
class Button:
    value: str
    label: str  # a catalogue key
    params: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Say:
    """A message from the catalogue, in the customer's language, optionally with buttons."""

    key: str
    params: Mapping[str, Any] = field(default_factory=dict)
    buttons: tuple[Button, ...] = ()
    share_phone: bool = False  # Telegram: offer the "share my phone number" button
    protect: bool = False  # Telegram: protect_content (tokens)


@dataclass(frozen=True, slots=True)
class DeleteUserMessage:
    """Delete the message the customer just sent (a PIN), where the channel allows."""


@dataclass(frozen=True, slots=True)
class SendReceipt:
    """A receipt image (and its text) for a completed movement. ``receipt``: kind,
    amount, fee, reference, created_at (ISO), status, from_party, to_party, lines."""

    receipt: Mapping[str, Any]


Reply = Say | DeleteUserMessage | SendReceipt

# ------------------------------------------------------------------ values for texts


@dataclass(frozen=True, slots=True)
class Money:
    """Rupiah to be shown the Indonesian way: ``Rp 2.000.000``."""

    amount: int


@dataclass(frozen=True, slots=True)
class When:
    """A moment shown in WIB."""

    at: datetime


@dataclass(frozen=True, slots=True)
class Day:
    on: date


@dataclass(frozen=True, slots=True)
class Term:
    """A word from the catalogue used inside another text (a tier, a status...)."""

    key: str


# ------------------------------------------------------------------ state

Expect = Literal["pin", "new_pin", "confirm_pin"]


class FlowState(BaseModel):
    """Base of every flow's state: small, frozen, JSON-serialisable."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    flow: str
    # What the next message is, when it is a secret the engine must handle first.
    expects: Expect | None = None
    # a keyed fingerprint (HMAC with the server secret) of a new PIN waiting for its
    # confirmation — never the PIN itself
    pending_pin_hash: str | None = None


@dataclass(frozen=True, slots=True)
class Step:
    replies: tuple[Reply, ...] = ()
    commands: tuple[Any, ...] = ()
    state: FlowState | None = None  # None: the flow is over
    # when the flow ends: show the home menu, unless its last reply offers its own buttons
    then_menu: bool = True


@dataclass(frozen=True, slots=True)
class Ctx:
    """What a step may know about the conversation besides its own state."""

    customer_id: int | None
    language: str
    channel: str
    chat_id: str
    now: datetime
    phone: str | None = None  # the linked customer's phone
    profile_name: str | None = None
    message_id: str = ""
    # product settings a flow shows (fees, cash-out amounts), from config
    config: Mapping[str, Any] = field(default_factory=dict)


def say(key: str, buttons: tuple[Button, ...] = (), **params: Any) -> Say:
    return Say(key, params, buttons)
