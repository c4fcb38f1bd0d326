"""Every text a customer sees exists in both languages with the same placeholders."""

from __future__ import annotations

import ast
import re
from datetime import UTC, date, datetime
from pathlib import Path

import pytest

from bot import i18n
from flows.core import Day, Money, Say, Term, When

ROOT = Path(__file__).resolve().parents[2]


def test_both_languages_have_the_same_keys() -> None:
    ids, ens = set(i18n.catalogue("id")), set(i18n.catalogue("en"))
    assert sorted(ids - ens) == [], "missing in en.yaml"
    assert sorted(ens - ids) == [], "missing in id.yaml"


@pytest.mark.parametrize("key", sorted(i18n.catalogue("id")))
def test_placeholders_match_between_languages(key: str) -> None:
    assert i18n.placeholders(i18n.catalogue("id")[key]) == i18n.placeholders(
        i18n.catalogue("en")[key]
    )


def _keys_used_in_code() -> set[str]:
    """Literal catalogue keys passed to say()/Say()/Button()/Term() in flows and bot."""
    used: set[str] = set()
    for path in [*ROOT.glob("flows/*.py"), *ROOT.glob("bot/*.py")]:
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call):
                continue
            name = getattr(node.func, "id", getattr(node.func, "attr", ""))
            args = node.args
            idx = {"say": 0, "Say": 0, "Term": 0, "Button": 1, "text": 1}.get(name)
            if idx is None or len(args) <= idx:
                continue
            arg = args[idx]
            if isinstance(arg, ast.Constant) and isinstance(arg.value, str) and "." in arg.value:
                used.add(arg.value)
    return used


def test_every_key_used_in_code_exists() -> None:
    known = set(i18n.catalogue("id"))
    assert len(_keys_used_in_code()) > 60  # the scan sees the flows' texts
    missing = sorted(k for k in _keys_used_in_code() if k not in known)
    assert missing == []


def test_error_codes_the_flows_explain_have_texts() -> None:
    from flows.parsing import CODES
    from flows.registry import FLOWS, menu_buttons

    known = set(i18n.catalogue("id"))
    phone = {c for c in CODES if c.startswith("phone_")}
    dob = {"date_format", "date_impossible", "date_in_future", "too_young"}
    assert {f"phone.{c}" for c in phone} <= known
    assert {f"dob.{c}" for c in dob} <= known
    for reason in ("not_six_digits", "repeated", "sequence", "birth_date", "same_as_old"):
        assert f"pin.weak.{reason}" in known
    for b in (*menu_buttons(True), *menu_buttons(False)):
        assert b.label in known and b.value in FLOWS


def test_rupiah_and_wib_formatting() -> None:
    assert i18n.rupiah(2_000_000) == "Rp 2.000.000"
    assert i18n.rupiah(500) == "Rp 500"
    assert i18n.rupiah(-15_000) == "-Rp 15.000"
    at = datetime(2026, 8, 16, 17, 30, tzinfo=UTC)  # 17 Aug 00:30 WIB
    assert i18n.wib(at, "id") == "17 Agu 2026 00:30 WIB"
    assert i18n.wib(at, "en") == "17 Aug 2026 00:30 WIB"
    say = Say(
        "history.detail",
        {
            "when": When(at),
            "what": Term("kind.qris"),
            "amount": Money(25_000),
            "fee": Money(0),
            "state": Term("state.posted"),
            "ref": "KPX",
            "description": "-",
        },
    )
    out = i18n.render("en", say)["text"]
    assert "QRIS payment" in out and "Rp 25.000" in out and "17 Aug 2026 00:30 WIB" in out
    assert re.search(
        r"17 Agustus 1990",
        i18n.text(
            "id",
            "profile.show",
            {
                "name": "A",
                "phone": "p",
                "email": "e",
                "birth_date": Day(date(1990, 8, 17)),
                "tier": "t",
                "status": "s",
                "since": Day(date(2026, 1, 1)),
            },
        ),
    )


def test_a_missing_key_is_an_error_not_a_blank_message() -> None:
    with pytest.raises(KeyError):
        i18n.text("id", "no.such.key")
