"""Phone numbers: E.164 via phonenumbers; only Indonesian mobile numbers register."""

from __future__ import annotations

import phonenumbers
from phonenumbers import NumberParseException, PhoneNumberType

from wallet.errors import InvalidPhoneNumber

_MOBILE = {PhoneNumberType.MOBILE, PhoneNumberType.FIXED_LINE_OR_MOBILE}


def normalize_phone(raw: str) -> str:
    """``0812…``, ``62812…``, ``+62 812-…`` → ``+62812…``; anything else raises."""
    text = raw.strip()
    digits = "".join(ch for ch in text if ch.isdigit())
    if not digits:
        raise InvalidPhoneNumber("no digits")
    if text.startswith("+"):
        candidate = "+" + digits
    elif digits.startswith("62"):
        candidate = "+" + digits
    else:
        candidate = digits
    try:
        number = phonenumbers.parse(candidate, "ID")
    except NumberParseException as exc:
        raise InvalidPhoneNumber(str(exc)) from exc
    if number.country_code != 62 or not phonenumbers.is_valid_number(number):
        raise InvalidPhoneNumber("not a valid Indonesian number")
    if phonenumbers.number_type(number) not in _MOBILE:
        raise InvalidPhoneNumber("not a mobile number")
    return str(phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164))
