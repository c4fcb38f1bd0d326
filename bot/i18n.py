"""The message catalogue (Bahasa Indonesia and English) and rendering with Babel."""

from __future__ import annotations

import string
from collections.abc import Mapping
from functools import cache
from pathlib import Path
from typing import Any

import yaml
from babel.dates import format_date, format_datetime
from babel.numbers import format_decimal

from flows.core import Day, Money, Say, Term, When
from wallet.clock import WIB

TEXTS = Path(__file__).resolve().parent.parent / "flows" / "texts"
LANGUAGES = ("id", "en")
DEFAULT_LANGUAGE = "id"
_LOCALE = {"id": "id_ID", "en": "en_US"}


@cache
def catalogue(language: str) -> Mapping[str, str]:
    data = yaml.safe_load((TEXTS / f"{language}.yaml").read_text(encoding="utf-8"))
    return {str(k): str(v) for k, v in data.items()}


def placeholders(text: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(text) if name}


def rupiah(amount: int) -> str:
    """``2000000`` → ``Rp 2.000.000`` (the Indonesian way, in both languages)."""
    sign = "-" if amount < 0 else ""
    return f"{sign}Rp {format_decimal(abs(amount), format='#,##0', locale='id_ID')}"


def wib(moment: Any, language: str) -> str:
    at = moment.astimezone(WIB)
    return format_datetime(at, "d MMM yyyy HH:mm", tzinfo=WIB, locale=_LOCALE[language]) + " WIB"


def _value(value: Any, language: str) -> Any:
    if isinstance(value, Money):
        return rupiah(value.amount)
    if isinstance(value, When):
        return wib(value.at, language)
    if isinstance(value, Day):
        return format_date(value.on, "d MMMM yyyy", locale=_LOCALE[language])
    if isinstance(value, Term):
        return text(language, value.key)
    return value


def text(language: str, key: str, params: Mapping[str, Any] | None = None) -> str:
    lang = language if language in LANGUAGES else DEFAULT_LANGUAGE
    template = catalogue(lang).get(key)
    if template is None:
        raise KeyError(f"message {key!r} missing from the {lang} catalogue")
    if not params:
        return template
    return template.format(**{k: _value(v, lang) for k, v in params.items()})


def render(language: str, reply: Say) -> dict[str, Any]:
    """A reply as the payload the channel adapters deliver."""
    payload: dict[str, Any] = {"type": "text", "text": text(language, reply.key, reply.params)}
    if reply.buttons:
        payload["buttons"] = [
            {"value": b.value, "label": text(language, b.label, b.params)} for b in reply.buttons
        ]
    if reply.share_phone:
        payload["share_phone"] = True
        payload["share_phone_label"] = text(language, "btn.share_phone")
    if reply.protect:
        payload["protect"] = True
    return payload
