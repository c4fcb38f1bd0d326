"""Pure parsers for what people type in a chat: phone numbers, amounts, dates, …

Every parser takes the raw message text and returns a value or raises
:class:`ParseError`, whose ``code`` names what was expected (``"phone_format"``,
``"amount_has_cents"``, ``"too_young"``, …) so a flow can turn it into a polite
message. The codes are listed in :data:`CODES`.

Conventions shared by all parsers:

* Surrounding whitespace and invisible formatting characters (zero-width spaces,
  the bidi marks WhatsApp puts around shared contacts) are ignored.
* Only ASCII digits count as digits: ``"٥٠٠٠٠"`` or full-width ``"５００００"`` are
  refused rather than silently read.
* Inputs longer than any sensible answer are refused before any real work.
* Money is computed exactly (integers and :class:`~fractions.Fraction`), never
  with floats.
"""

from __future__ import annotations

import re
import string
import unicodedata
from datetime import date
from fractions import Fraction
from typing import Final, Literal

import phonenumbers
from email_validator import EmailNotValidError, validate_email
from phonenumbers import NumberParseException

from wallet.errors import InvalidPhoneNumber
from wallet.phone import normalize_phone

__all__ = [
    "CODES",
    "COMMANDS",
    "Command",
    "ParseError",
    "normalize_command",
    "parse_amount",
    "parse_birth_date",
    "parse_email",
    "parse_otp",
    "parse_phone",
    "parse_pin",
    "parse_yes_no",
]

CODES: Final[frozenset[str]] = frozenset(
    {
        "phone_format",
        "phone_not_mobile",
        "phone_not_indonesian",
        "amount_format",
        "amount_not_positive",
        "amount_has_cents",
        "date_format",
        "date_impossible",
        "date_in_future",
        "too_young",
        "email_format",
        "yes_no",
        "pin_format",
        "otp_format",
    }
)
"""Every code a parser in this module can raise."""


class ParseError(ValueError):
    """The text was not what was expected; ``code`` says what was expected.

    ``details`` carries the numbers a message may want to mention, e.g.
    ``ParseError("too_young", min_age=17)``.
    """

    def __init__(self, code: str, message: str = "", **details: object) -> None:
        super().__init__(message or code)
        self.code = code
        self.details: dict[str, object] = details

    def __repr__(self) -> str:
        return f"ParseError({self.code!r})"


# --------------------------------------------------------------------------- helpers

_MAX_INPUT: Final = 256  # longer than any answer to any question we ask


def _clean(text: str, code: str, limit: int = _MAX_INPUT) -> str:
    """Strip whitespace and invisible format characters; refuse absurdly long text."""
    if len(text) > limit * 4:  # cheap early exit before touching every character
        raise ParseError(code, "input too long")
    cleaned = "".join(ch for ch in text if unicodedata.category(ch) != "Cf").strip()
    if len(cleaned) > limit:
        raise ParseError(code, "input too long")
    return cleaned


def _strip_around(text: str) -> str:
    """Lowercase, collapse inner whitespace, drop punctuation/symbols at both ends."""
    words = " ".join(text.lower().split())
    start, end = 0, len(words)
    while start < end and not words[start].isalnum():
        start += 1
    while end > start and not words[end - 1].isalnum():
        end -= 1
    return words[start:end]


# --------------------------------------------------------------------------- phone

_PHONE_MAX_LEN: Final = 40
_PHONE_MAX_DIGITS: Final = 17  # E.164 allows 15; a national 0 and some slack on top
_PHONE_CHARS = re.compile(r"\+?[0-9 ().\-]+")


def parse_phone(text: str) -> str:
    """An Indonesian mobile number in E.164 (``"+6281234567890"``).

    Accepts ``081234567890``, ``6281234567890``, ``+62 812-3456-7890``,
    ``(0812) 3456 7890``, ``+62 (812) 3456-7890``. Codes: ``phone_format``
    (letters, too short/long), ``phone_not_indonesian`` (a foreign number),
    ``phone_not_mobile`` (an Indonesian landline, toll-free, …).
    """
    cleaned = _clean(text, "phone_format", _PHONE_MAX_LEN)
    # Other whitespace (non-breaking spaces, tabs) separates groups like a space.
    cleaned = " ".join(cleaned.split())
    if not _PHONE_CHARS.fullmatch(cleaned):
        raise ParseError("phone_format", "only digits, spaces, +, -, . and () allowed")
    digits = "".join(ch for ch in cleaned if "0" <= ch <= "9")
    if not digits or len(digits) > _PHONE_MAX_DIGITS:
        raise ParseError("phone_format", "wrong number of digits")
    try:
        return normalize_phone(cleaned)
    except InvalidPhoneNumber:
        raise ParseError(_phone_failure_code(cleaned, digits)) from None


def _phone_failure_code(cleaned: str, digits: str) -> str:
    """Why ``normalize_phone`` refused: foreign, not mobile, or just malformed."""
    # Same reading of the digits as wallet.phone.normalize_phone.
    candidate = "+" + digits if cleaned.startswith("+") or digits.startswith("62") else digits
    try:
        number = phonenumbers.parse(candidate, "ID")
    except NumberParseException:
        return "phone_format"
    if number.country_code != 62:
        return "phone_not_indonesian" if phonenumbers.is_possible_number(number) else "phone_format"
    if phonenumbers.is_valid_number(number):
        return "phone_not_mobile"  # valid Indonesian, but a landline, toll-free, …
    return "phone_format"


# --------------------------------------------------------------------------- amount

_AMOUNT_MAX_LEN: Final = 48

_MULTIPLIERS: Final[dict[str, int]] = {
    "k": 1_000,
    "rb": 1_000,
    "rbu": 1_000,
    "ribu": 1_000,
    "rebu": 1_000,
    "jt": 1_000_000,
    "jta": 1_000_000,
    "juta": 1_000_000,
}
_SUFFIX = "|".join(sorted(_MULTIPLIERS, key=len, reverse=True))
# A number with at most one decimal separator (either . or ,) and a multiplier word.
_TERM = re.compile(rf"([0-9]+(?:[.,][0-9]+)?) ?({_SUFFIX})\.?(?![a-z])", re.ASCII)

_CURRENCY_PREFIX = re.compile(r"(?:rp|idr)\.? ?")
_CURRENCY_SUFFIX = re.compile(r" ?(?:rupiah|rp|idr)\.?\Z")
_DASH_SUFFIX = re.compile(r"[.,]-\Z")  # "Rp 50.000,-"

# Without a multiplier: "." groups thousands, "," is the decimal separator
# ("50.000,50"); English "50,000.50" is read too when "," groups thousands.
# Each pattern: (integer part)(decimal part, optional); first match wins.
_PLAIN_PATTERNS: Final = (
    re.compile(r"([1-9][0-9]{0,2}(?:\.[0-9]{3})+)(?:,([0-9]+))?", re.ASCII),
    re.compile(r"([1-9][0-9]{0,2}(?:,[0-9]{3})+)(?:\.([0-9]+))?", re.ASCII),
    re.compile(r"([1-9][0-9]{0,2}(?: [0-9]{3})+)(?:,([0-9]+))?", re.ASCII),
    re.compile(r"([0-9]+)(?:,([0-9]+))?", re.ASCII),
)


def parse_amount(text: str) -> int:
    """A positive amount in whole rupiah.

    Accepts ``50000``, ``50.000``, ``50,000``, ``Rp50.000``, ``IDR 50000``,
    ``rp. 50.000,-``, ``50rb``, ``50 ribu``, ``50k``, ``1,5jt``, ``1.5 juta``,
    ``1 juta 500 ribu``. Without a multiplier ``.`` only groups thousands
    (``1.500`` is 1500, ``1.50`` is refused) and ``,`` is a decimal comma
    unless it groups thousands (``50,000``); with one, both are decimal points.
    Codes: ``amount_format``, ``amount_not_positive``, ``amount_has_cents``.
    """
    s = " ".join(_clean(text, "amount_format", _AMOUNT_MAX_LEN).lower().split())
    negative = False
    if s.startswith("-"):
        negative, s = True, s[1:].lstrip()
    if m := _CURRENCY_PREFIX.match(s):
        s = s[m.end() :]
        if not negative and s.startswith("-"):
            negative, s = True, s[1:].lstrip()
    if m := _DASH_SUFFIX.search(s):
        s = s[: m.start()]
    if (m := _CURRENCY_SUFFIX.search(s)) and m.start() > 0:
        s = s[: m.start()]
    if not s:
        raise ParseError("amount_format", "no number")
    has_words = any("a" <= ch <= "z" for ch in s)
    value = _amount_with_multipliers(s) if has_words else _plain_amount(s)
    if negative or value <= 0:
        raise ParseError("amount_not_positive")
    if value.denominator != 1:
        raise ParseError("amount_has_cents")
    return int(value)


def _decimal(integer: str, fraction: str) -> Fraction:
    return Fraction(int(integer + fraction), 10 ** len(fraction))


def _plain_amount(s: str) -> Fraction:
    for pattern in _PLAIN_PATTERNS:
        if m := pattern.fullmatch(s):
            integer = "".join(ch for ch in m.group(1) if ch.isdigit())
            return _decimal(integer, m.group(2) or "")
    raise ParseError("amount_format")


def _amount_with_multipliers(s: str) -> Fraction:
    """``"1,5jt"``, ``"50 ribu"``, ``"1 juta 500 ribu"``: terms with falling multipliers."""
    total = Fraction(0)
    previous: int | None = None
    pos = 0
    while pos < len(s):
        m = _TERM.match(s, pos)
        if m is None:
            raise ParseError("amount_format")
        number, suffix = m.group(1), m.group(2)
        multiplier = _MULTIPLIERS[suffix]
        integer, _, fraction = number.replace(",", ".").partition(".")
        term = _decimal(integer, fraction) * multiplier
        if previous is not None and (multiplier >= previous or term >= previous):
            raise ParseError("amount_format")  # "1jt 2jt", "1jt 2000rb"
        total += term
        previous = multiplier
        pos = m.end()
        if pos < len(s) and s[pos] == " ":  # "1 juta 500 ribu" as well as "1jt500rb"
            pos += 1
    return total


# --------------------------------------------------------------------------- birth date

_DATE_MAX_LEN: Final = 40
_MAX_AGE: Final = 120

_MONTHS: Final[dict[str, int]] = {
    name: number
    for number, names in enumerate(
        (
            ("januari", "january", "jan"),
            ("februari", "pebruari", "february", "feb", "peb"),
            ("maret", "march", "mar"),
            ("april", "apr"),
            ("mei", "may"),
            ("juni", "june", "jun"),
            ("juli", "july", "jul"),
            ("agustus", "august", "agu", "agt", "aug", "ags"),
            ("september", "sep", "sept"),
            ("oktober", "october", "okt", "oct"),
            ("november", "nopember", "nov", "nop"),
            ("desember", "december", "des", "dec"),
        ),
        start=1,
    )
    for name in names
}

_SEP = r"\s*[-/.]\s*|\s+"
_ORDINAL = r"(?:st|nd|rd|th)?"
_NUMERIC_DMY = re.compile(rf"([0-9]{{1,2}})(?:{_SEP})([0-9]{{1,2}})(?:{_SEP})([0-9]+)")
_ISO = re.compile(r"([0-9]{4})([-/.])([0-9]{1,2})\2([0-9]{1,2})")
_DAY_NAME_YEAR = re.compile(
    rf"([0-9]{{1,2}}){_ORDINAL}(?:{_SEP})?([a-z]+)\.?(?:\s*[-/.,]\s*|\s+)?([0-9]+)"
)
_NAME_DAY_YEAR = re.compile(rf"([a-z]+)\.?\s*([0-9]{{1,2}}){_ORDINAL}(?:\s*,\s*|\s+)([0-9]+)")


def parse_birth_date(text: str, today: date, min_age: int = 17) -> date:
    """A date of birth, day first: ``17-08-1990``, ``17/08/1990``, ``17.08.1990``,
    ``17 8 1990``, ``17 Agustus 1990``, ``17 agt 1990``, ``17 Aug 1990``,
    ``August 17, 1990`` or ISO ``1990-08-17``.

    Codes: ``date_format`` (unreadable, unknown month, year not four digits),
    ``date_impossible`` (31 February, older than 120), ``date_in_future``,
    ``too_young`` (younger than ``min_age``; ``details["min_age"]``).
    """
    s = " ".join(_clean(text, "date_format", _DATE_MAX_LEN).lower().split()).rstrip(".")
    if m := _ISO.fullmatch(s):
        year, month, day = m.group(1), m.group(3), m.group(4)
    elif m := _NUMERIC_DMY.fullmatch(s):
        day, month, year = m.groups()
    elif m := _DAY_NAME_YEAR.fullmatch(s):
        day, month, year = m.group(1), _month_number(m.group(2)), m.group(3)
    elif m := _NAME_DAY_YEAR.fullmatch(s):
        month, day, year = _month_number(m.group(1)), m.group(2), m.group(3)
    else:
        raise ParseError("date_format")
    if len(year) != 4:
        raise ParseError("date_format", "the year needs four digits")
    try:
        born = date(int(year), int(month), int(day))
    except ValueError:
        raise ParseError("date_impossible") from None
    if born > today:
        raise ParseError("date_in_future")
    age = today.year - born.year - ((today.month, today.day) < (born.month, born.day))
    if age > _MAX_AGE:
        raise ParseError("date_impossible", "older than 120", max_age=_MAX_AGE)
    if age < min_age:
        raise ParseError("too_young", min_age=min_age)
    return born


def _month_number(name: str) -> str:
    try:
        return str(_MONTHS[name])
    except KeyError:
        raise ParseError("date_format", "unknown month") from None


# --------------------------------------------------------------------------- email


def parse_email(text: str) -> str:
    """A syntactically valid address, normalised (domain lowercased). Code: ``email_format``."""
    cleaned = _clean(text, "email_format", 320)
    try:
        return validate_email(cleaned, check_deliverability=False).normalized
    except EmailNotValidError as exc:
        raise ParseError("email_format", str(exc)) from None


# --------------------------------------------------------------------------- yes / no

_YES: Final = frozenset(
    {"ya", "y", "iya", "iyaa", "yes", "yup", "ok", "oke", "okay", "okey", "setuju", "benar",
     "betul", "lanjut", "lanjutkan"}
)  # fmt: skip
# "batal" is deliberately absent: it means cancel, see normalize_command.
_NO: Final = frozenset(
    {"tidak", "tdk", "no", "n", "nope", "nggak", "ngga", "gak", "ga", "enggak", "engga",
     "bukan", "salah"}
)  # fmt: skip


def parse_yes_no(text: str) -> bool:
    """``ya``/``ok``/``setuju``/… → True; ``tidak``/``gak``/``bukan``/… → False.

    Case and punctuation or whitespace around the word are ignored. Code: ``yes_no``.
    """
    word = _strip_around(_clean(text, "yes_no", 64))
    if word in _YES:
        return True
    if word in _NO:
        return False
    raise ParseError("yes_no")


# --------------------------------------------------------------------------- PIN / OTP

_PIN = re.compile(r"[0-9]{6}")
_OTP = re.compile(r"[0-9](?:[\s-]*[0-9]){5}")


def parse_pin(text: str) -> str:
    """Exactly six ASCII digits (spaces anywhere ignored). Code: ``pin_format``."""
    digits = "".join(_clean(text, "pin_format", 64).split())
    if not _PIN.fullmatch(digits):
        raise ParseError("pin_format")
    return digits


def parse_otp(text: str) -> str:
    """Six ASCII digits, spaces or dashes allowed between (``123 456``, ``123-456``).

    Code: ``otp_format``.
    """
    cleaned = _clean(text, "otp_format", 64)
    if not _OTP.fullmatch(cleaned):
        raise ParseError("otp_format")
    return "".join(ch for ch in cleaned if "0" <= ch <= "9")


# --------------------------------------------------------------------------- commands

Command = Literal["menu", "cancel", "help", "language", "agent"]

COMMANDS: Final[dict[str, Command]] = {
    **dict.fromkeys(("menu", "menu utama", "home", "start"), "menu"),
    **dict.fromkeys(("batal", "cancel", "stop", "keluar"), "cancel"),
    **dict.fromkeys(("help", "bantuan", "tolong"), "help"),
    **dict.fromkeys(
        (
            "bahasa",
            "language",
            "english",
            "indonesia",
            "ganti bahasa",
            "bahasa indonesia",
            "bahasa inggris",
            "change language",
        ),
        "language",
    ),
    **dict.fromkeys(
        (
            "cs",
            "agen",
            "agent",
            "operator",
            "manusia",
            "human",
            "bicara dengan cs",
            "hubungi cs",
            "customer service",
            "talk to a person",
            "talk to agent",
            "talk to an agent",
            "talk to a human",
        ),
        "agent",
    ),
}
"""Every phrase :func:`normalize_command` recognises, and the command it means."""

_BOT_COMMAND = re.compile(r"(/[a-z]+)@[a-z0-9_]+", re.IGNORECASE | re.ASCII)
_PUNCTUATION_ONLY = re.compile(rf"[\s{re.escape(string.punctuation)}]+")


def normalize_command(text: str) -> Command | None:
    """The global command a whole message asks for, or None.

    Only the whole message counts, after lowercasing and dropping punctuation at
    the ends (``"Batal!"``, ``"/menu"``, ``"/start@KasProBot"``): ``"saya mau
    batal transfer kemarin"`` is not a command. A lone ``"?"`` asks for help.
    """
    if len(text) > 64:
        return None
    cleaned = "".join(ch for ch in text if unicodedata.category(ch) != "Cf").strip()
    if m := _BOT_COMMAND.fullmatch(cleaned):  # Telegram: "/start@KasProBot"
        cleaned = m.group(1)
    if cleaned and _PUNCTUATION_ONLY.fullmatch(cleaned):
        return "help" if set(cleaned) - set(string.whitespace) == {"?"} else None
    return COMMANDS.get(_strip_around(cleaned))
