"""Masking of personal data for logs and for what other customers see."""

from __future__ import annotations

import re

_PHONE = re.compile(r"(?<![\w])(\+?62|0)8\d{7,12}(?!\d)")
_EMAIL = re.compile(r"([A-Za-z0-9._%+-])[A-Za-z0-9._%+-]*@([A-Za-z0-9.-]+\.[A-Za-z]{2,})")
_NIK = re.compile(r"(?<!\d)\d{16}(?!\d)")


def mask_phone(phone: str) -> str:
    """``+6281234567890`` → ``+62812****7890``."""
    if len(phone) <= 8:
        return "****"
    return phone[:6] + "*" * (len(phone) - 10 if len(phone) > 10 else 4) + phone[-4:]


def mask_text(text: str) -> str:
    """Mask every phone number, email and 16-digit NIK inside free text."""
    text = _NIK.sub(lambda m: m.group(0)[:4] + "********" + m.group(0)[-4:], text)
    text = _PHONE.sub(lambda m: mask_phone(m.group(0)), text)
    return _EMAIL.sub(lambda m: f"{m.group(1)}***@{m.group(2)}", text)


def mask_name(first: str, last: str = "") -> str:
    """What a sender sees of a recipient: ``Budi Santoso`` → ``Bu** Sa*****``."""

    def one(word: str) -> str:
        return word[:2] + "*" * max(len(word) - 2, 1) if word else ""

    return " ".join(one(w) for w in f"{first} {last}".split())
