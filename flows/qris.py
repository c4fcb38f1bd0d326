"""QRIS: the EMVCo merchant-presented QR payload used for payments in Indonesia.

:func:`parse_qris` turns the text inside a QRIS code into a :class:`QrisPayment`
or raises :class:`QrisError` whose ``code`` says what was wrong (the codes are in
:data:`CODES`). It is pure: no I/O, no clock, no randomness.

The payload is a run of TLV elements: a 2-digit tag, a 2-digit length and that
many *characters* of value. Tags 26–51 (merchant account information) and 62
(additional data) hold nested TLV runs of their own. The last element is the
checksum: tag ``63``, length ``04`` and four hex digits of CRC-16/CCITT-FALSE
(poly 0x1021, init 0xFFFF, no reflection, no final xor) computed over the UTF-8
bytes of everything before those four digits, ``"6304"`` included.

The checks run in this order; the first failure is the error:

1. ``not_qris``: not text, or it neither starts (``"0002"``, the payload
   format indicator) nor ends (``"6304"`` + 4 hex digits) like an EMVCo
   payload: a URL, a chat message, an empty string. Over 512 characters (the
   EMVCo maximum) or with control characters: ``bad_format``.
2. The checksum, before anything else is read. ``bad_crc``: the payload ends
   in ``6304`` + 4 hex digits that do not match, or it is whole but has no
   (well-formed) CRC element at the end. A single changed character anywhere
   but in the ``6304`` marker always lands here. ``truncated``: there is no
   checksum at the end because a length runs past the end of the text (a
   payload cut short).
3. Structure, ``bad_format``: non-digit tag or length, duplicate tag, CRC not
   last, payload format indicator not ``01``, point of initiation not ``11``
   or ``12``.
4. Currency: ``missing_field`` without tag 53, ``wrong_currency`` unless it is
   ``360`` (rupiah).
5. Merchant category code, name, city, country: ``missing_field`` when absent
   or blank, ``bad_format`` for an MCC that is not 4 digits or a country other
   than ``ID``. Then the merchant account templates: ``missing_field`` when
   there is none, ``bad_format`` when one (or template 62) does not parse.
6. ``bad_amount``: the amount (54) is not a positive whole-rupiah number
   (``"10000"`` and ``"10000.00"`` are fine, ``"10000.50"`` is not).
7. Tip (55): ``bad_format`` for an unknown indicator or a missing fee element,
   ``bad_amount`` for a fee (56/57) that is not a valid number.

:func:`build_qris` writes valid payloads (static or dynamic, with tips and fees)
for tests and the sandbox; :func:`append_crc` seals a hand-made body.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from typing import Final, Literal, TypeAlias

__all__ = [
    "CODES",
    "MAX_PAYLOAD_CHARS",
    "QRIS_GLOBAL_ID",
    "MerchantAccount",
    "QrisError",
    "QrisErrorCode",
    "QrisPayment",
    "TipMode",
    "append_crc",
    "build_qris",
    "crc16_ccitt",
    "parse_qris",
]

QrisErrorCode: TypeAlias = Literal[
    "not_qris",
    "truncated",
    "bad_crc",
    "wrong_currency",
    "bad_amount",
    "missing_field",
    "bad_format",
]
TipMode: TypeAlias = Literal["prompt", "fixed", "percent"] | None

CODES: Final[frozenset[str]] = frozenset(
    {
        "not_qris",
        "truncated",
        "bad_crc",
        "wrong_currency",
        "bad_amount",
        "missing_field",
        "bad_format",
    }
)
"""Every code :func:`parse_qris` can raise."""

MAX_PAYLOAD_CHARS: Final = 512
"""EMVCo caps a merchant-presented payload at 512 characters."""

QRIS_GLOBAL_ID: Final = "ID.CO.QRIS.WWW"
"""Globally unique id of the national QRIS repository (template 51)."""

IDR: Final = "360"
_CRC_TAIL_LEN: Final = 8  # "6304" + 4 hex digits
_MAX_AMOUNT_CHARS: Final = 13  # EMVCo: tag 54 and 56 hold at most 13 characters
_MAX_PERCENT_CHARS: Final = 5  # "99.99"
_AMOUNT = re.compile(r"([0-9]+)(?:\.([0-9]{0,2}))?")
_PERCENT = re.compile(r"[0-9]{1,2}(?:\.[0-9]{0,2})?")
_HEX = re.compile(r"[0-9A-Fa-f]{4}")
_MCC = re.compile(r"[0-9]{4}")
_TIP_MODES: Final[dict[str, TipMode]] = {"01": "prompt", "02": "fixed", "03": "percent"}
_TIP_CODES: Final[dict[str, str]] = {"prompt": "01", "fixed": "02", "percent": "03"}


class QrisError(ValueError):
    """The text is not a usable QRIS payload; ``code`` (one of :data:`CODES`) says why."""

    def __init__(self, code: QrisErrorCode, message: str = "") -> None:
        super().__init__(f"{code}: {message}" if message else code)
        self.code: QrisErrorCode = code

    def __repr__(self) -> str:
        return f"QrisError({self.code!r})"


# --------------------------------------------------------------------------- CRC


def _crc_table() -> tuple[int, ...]:
    table = []
    for byte in range(256):
        crc = byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) if crc & 0x8000 else (crc << 1)
        table.append(crc & 0xFFFF)
    return tuple(table)


_TABLE: Final = _crc_table()


def crc16_ccitt(data: bytes) -> int:
    """CRC-16/CCITT-FALSE of ``data`` (``crc16_ccitt(b"123456789") == 0x29B1``)."""
    crc = 0xFFFF
    for byte in data:
        crc = ((crc << 8) & 0xFFFF) ^ _TABLE[(crc >> 8) ^ byte]
    return crc


def _crc_hex(text: str) -> str:
    return f"{crc16_ccitt(text.encode('utf-8')):04X}"


def append_crc(body: str) -> str:
    """``body`` (every element but the CRC) sealed with ``"6304"`` and its checksum."""
    with_tag = body + "6304"
    return with_tag + _crc_hex(with_tag)


# --------------------------------------------------------------------------- result


@dataclass(frozen=True, slots=True)
class MerchantAccount:
    """One merchant account information template (tags 26–51)."""

    tag: str
    global_id: str | None
    """Sub-tag 00, e.g. ``"COM.GO-JEK.WWW"``, ``"ID.DANA.WWW"``, ``"ID.CO.QRIS.WWW"``."""
    pan: str | None
    """Sub-tag 01, the merchant PAN (``"9360…"``)."""
    merchant_id: str | None
    """Sub-tag 02: the acquirer's merchant id, or the NMID in template 51."""
    criteria: str | None
    """Sub-tag 03: ``"UMI"``, ``"UKE"``, ``"UME"`` or ``"UBE"`` (business size)."""
    fields: tuple[tuple[str, str], ...]
    """Every sub-element, in payload order."""


@dataclass(frozen=True, slots=True)
class QrisPayment:
    """What a QRIS code asks the payer to do. Amounts are whole rupiah."""

    payload: str
    merchant_name: str
    city: str
    mcc: str
    """Merchant category code (tag 52), four digits."""
    nmid: str | None
    """National merchant id (``"ID10…"``) from template 51, or any template's
    sub-tag 02 that starts with ``"ID"``; ``None`` when there is none."""
    static: bool
    """True for a static (``"11"``) code: reusable, the payer usually types the amount."""
    amount: int | None
    tip: TipMode
    """``"prompt"``: the payer may add a tip; ``"fixed"``: :attr:`fee_fixed` is
    added; ``"percent"``: :attr:`fee_percent` percent of the amount is added."""
    fee_fixed: int | None
    fee_percent: Decimal | None
    postal_code: str | None
    country: str
    currency: str
    criteria: str | None
    """Merchant criteria from template 51 (or the first template that has one)."""
    acquirers: tuple[str, ...]
    """Global ids of the merchant account templates 26–51 in tag order (the
    national repository ``ID.CO.QRIS.WWW`` included when present)."""
    merchant_accounts: tuple[MerchantAccount, ...]
    additional_data: tuple[tuple[str, str], ...]
    """Sub-elements of template 62 (bill number, reference, terminal label, …)."""
    fields: tuple[tuple[str, str], ...]
    """Every top-level element, in payload order, values as written."""
    crc: str

    def field(self, tag: str) -> str | None:
        """The raw value of top-level element ``tag``, if present."""
        return _lookup(self.fields, tag)

    @property
    def bill_number(self) -> str | None:
        return _lookup(self.additional_data, "01")

    @property
    def reference_label(self) -> str | None:
        return _lookup(self.additional_data, "05")

    @property
    def terminal_label(self) -> str | None:
        return _lookup(self.additional_data, "07")

    def fee_for(self, amount: int) -> int:
        """The convenience fee the code adds to a payment of ``amount`` rupiah.

        A fixed fee as written; a percentage rounded half-up to whole rupiah; 0
        when the code has no fee (or leaves the tip to the payer).
        """
        if isinstance(amount, bool) or not isinstance(amount, int) or amount < 0:
            raise QrisError("bad_amount", "amount must be a non-negative whole number")
        if self.tip == "fixed" and self.fee_fixed is not None:
            return self.fee_fixed
        if self.tip == "percent" and self.fee_percent is not None:
            fee = Decimal(amount) * self.fee_percent / 100
            return int(fee.quantize(Decimal(1), rounding=ROUND_HALF_UP))
        return 0


def _lookup(pairs: Iterable[tuple[str, str]], tag: str) -> str | None:
    for key, value in pairs:
        if key == tag:
            return value
    return None


# --------------------------------------------------------------------------- parsing


def _split(text: str, *, nested: bool) -> list[tuple[str, str]]:
    """TLV elements of ``text``. Every step consumes at least 4 characters."""
    elements: list[tuple[str, str]] = []
    seen: set[str] = set()
    pos, end = 0, len(text)
    # A broken nested template is a format problem: the payload itself is whole.
    short: QrisErrorCode = "bad_format" if nested else "truncated"
    while pos < end:
        if end - pos < 4:
            raise QrisError(short, f"element header cut off at {pos}")
        tag, length = text[pos : pos + 2], text[pos + 2 : pos + 4]
        if not (_is_digits(tag) and _is_digits(length)):
            raise QrisError("bad_format", f"bad tag or length at {pos}")
        start = pos + 4
        stop = start + int(length)
        if stop > end:
            raise QrisError(short, f"element {tag} runs past the end")
        if tag in seen:
            raise QrisError("bad_format", f"element {tag} appears twice")
        seen.add(tag)
        elements.append((tag, text[start:stop]))
        pos = stop
    return elements


def _is_digits(text: str) -> bool:
    return len(text) > 0 and all("0" <= ch <= "9" for ch in text)


def _has_control_chars(text: str) -> bool:
    return any(ord(ch) < 0x20 or 0x7F <= ord(ch) < 0xA0 for ch in text)


def _has_crc_tail(payload: str) -> bool:
    tail = payload[-_CRC_TAIL_LEN:]
    return len(tail) == _CRC_TAIL_LEN and tail.startswith("6304") and bool(_HEX.fullmatch(tail[4:]))


def _check_integrity(payload: str) -> list[tuple[str, str]]:
    """Verify the CRC, then split the top level. Returns the elements."""
    tail = payload[-_CRC_TAIL_LEN:]
    if not _has_crc_tail(payload):
        # Tell a payload cut short (a length runs past the end) from one that
        # is whole but carries no checksum.
        _split(payload, nested=False)
        raise QrisError("bad_crc", "no CRC element at the end")
    if tail[4:].upper() != _crc_hex(payload[:-4]):
        raise QrisError("bad_crc", "checksum does not match")
    elements = _split(payload, nested=False)
    # The last element holding exactly the last 4 characters means "6304" is its header.
    if elements[-1] != ("63", tail[4:]):
        raise QrisError("bad_crc", "the CRC is not the last element")
    return elements


def _whole_rupiah(value: str, what: str) -> int:
    if len(value) > _MAX_AMOUNT_CHARS:
        raise QrisError("bad_amount", f"{what} too long")
    match = _AMOUNT.fullmatch(value)
    if match is None:
        raise QrisError("bad_amount", f"{what} is not a number")
    cents = match.group(2)
    if cents and int(cents) != 0:
        raise QrisError("bad_amount", f"{what} has cents")
    rupiah = int(match.group(1))
    if rupiah <= 0:
        raise QrisError("bad_amount", f"{what} must be positive")
    return rupiah


def _percent(value: str) -> Decimal:
    if len(value) > _MAX_PERCENT_CHARS or _PERCENT.fullmatch(value) is None:
        raise QrisError("bad_amount", "fee percentage is not a number")
    percent = Decimal(value)
    if not Decimal("0.01") <= percent <= Decimal("99.99"):
        raise QrisError("bad_amount", "fee percentage out of range")
    return percent


def _merchant_account(tag: str, value: str) -> MerchantAccount:
    sub = tuple(_split(value, nested=True))
    return MerchantAccount(
        tag=tag,
        global_id=_lookup(sub, "00"),
        pan=_lookup(sub, "01"),
        merchant_id=_lookup(sub, "02"),
        criteria=_lookup(sub, "03"),
        fields=sub,
    )


def _nmid(accounts: Sequence[MerchantAccount]) -> str | None:
    ordered = sorted(accounts, key=lambda a: a.tag != "51")  # template 51 first
    for account in ordered:
        if account.merchant_id and account.merchant_id.startswith("ID"):
            return account.merchant_id
    return None


def _required(fields: dict[str, str], tag: str, what: str) -> str:
    value = fields.get(tag, "").strip()
    if not value:
        raise QrisError("missing_field", f"no {what} (tag {tag})")
    return value


def parse_qris(text: str) -> QrisPayment:
    """Parse and verify the text of a QRIS code. Raises :class:`QrisError` only."""
    if not isinstance(text, str) or len(text) > 4 * MAX_PAYLOAD_CHARS:
        raise QrisError("not_qris", "not text of a plausible size")
    payload = text.strip()
    if not (payload.startswith("0002") or _has_crc_tail(payload)):
        raise QrisError("not_qris", "neither starts nor ends like an EMVCo payload")
    if len(payload) > MAX_PAYLOAD_CHARS:
        raise QrisError("bad_format", f"longer than {MAX_PAYLOAD_CHARS} characters")
    if _has_control_chars(payload):
        raise QrisError("bad_format", "control characters")

    elements = _check_integrity(payload)
    fields = dict(elements)

    if elements[0] != ("00", "01"):
        raise QrisError("bad_format", "payload format indicator must be 01")
    initiation = fields.get("01")
    if initiation not in (None, "11", "12"):
        raise QrisError("bad_format", "point of initiation must be 11 or 12")

    currency = _required(fields, "53", "currency")
    if currency != IDR:
        raise QrisError("wrong_currency", f"currency {currency} is not rupiah")
    mcc = _required(fields, "52", "merchant category code")
    if _MCC.fullmatch(mcc) is None:
        raise QrisError("bad_format", "merchant category code must be 4 digits")
    merchant_name = _required(fields, "59", "merchant name")
    city = _required(fields, "60", "merchant city")
    country = _required(fields, "58", "country")
    if country != "ID":
        raise QrisError("bad_format", f"country {country} is not Indonesia")

    accounts = tuple(
        _merchant_account(tag, value) for tag, value in elements if 26 <= int(tag) <= 51
    )
    if not accounts and not any(2 <= int(tag) <= 25 for tag, _ in elements):
        raise QrisError("missing_field", "no merchant account information (tags 02-51)")
    additional = tuple(_split(fields["62"], nested=True)) if "62" in fields else ()

    amount = _whole_rupiah(fields["54"], "amount") if "54" in fields else None

    tip: TipMode = None
    fee_fixed: int | None = None
    fee_percent: Decimal | None = None
    if "55" in fields:
        if fields["55"] not in _TIP_MODES:
            raise QrisError("bad_format", "tip indicator must be 01, 02 or 03")
        tip = _TIP_MODES[fields["55"]]
        if tip == "fixed":
            if "56" not in fields:
                raise QrisError("bad_format", "fixed fee indicated but tag 56 missing")
            fee_fixed = _whole_rupiah(fields["56"], "fixed fee")
        elif tip == "percent":
            if "57" not in fields:
                raise QrisError("bad_format", "percentage fee indicated but tag 57 missing")
            fee_percent = _percent(fields["57"])

    criteria = next(
        (a.criteria for a in sorted(accounts, key=lambda a: a.tag != "51") if a.criteria),
        None,
    )
    postal_code = fields.get("61", "").strip() or None
    return QrisPayment(
        payload=payload,
        merchant_name=merchant_name,
        city=city,
        mcc=mcc,
        nmid=_nmid(accounts),
        static=(initiation == "11") if initiation is not None else (amount is None),
        amount=amount,
        tip=tip,
        fee_fixed=fee_fixed,
        fee_percent=fee_percent,
        postal_code=postal_code,
        country=country,
        currency=currency,
        criteria=criteria,
        acquirers=tuple(a.global_id for a in accounts if a.global_id),
        merchant_accounts=accounts,
        additional_data=additional,
        fields=tuple(elements),
        crc=fields["63"].upper(),
    )


# --------------------------------------------------------------------------- building


def _tlv(tag: str, value: str) -> str:
    if len(tag) != 2 or not _is_digits(tag):
        raise ValueError(f"bad tag {tag!r}")
    if len(value) > 99:
        raise ValueError(f"value of tag {tag} longer than 99 characters")
    return f"{tag}{len(value):02d}{value}"


def _template(pairs: Iterable[tuple[str, str | None]]) -> str:
    return "".join(_tlv(tag, value) for tag, value in pairs if value is not None)


def build_qris(
    *,
    merchant_name: str,
    city: str,
    mcc: str = "5499",
    nmid: str | None = "ID1020000000001",
    amount: int | str | None = None,
    static: bool | None = None,
    tip: TipMode = None,
    fee_fixed: int | str | None = None,
    fee_percent: Decimal | str | None = None,
    postal_code: str | None = None,
    acquirer: str | None = "ID.CO.KASPRO.WWW",
    merchant_pan: str | None = "936000000000000001",
    merchant_id: str | None = "KP0000000001",
    criteria: str = "UMI",
    bill_number: str | None = None,
    reference_label: str | None = None,
    terminal_label: str | None = None,
    currency: str = IDR,
    country: str = "ID",
    extra: Sequence[tuple[str, str]] = (),
) -> str:
    """A QRIS payload with a correct CRC, for tests and the sandbox.

    Static (``"11"``) unless an amount is given or ``static=False``. ``amount``
    and ``fee_fixed`` may be strings to write them exactly as given (e.g.
    ``"10000.00"``); ``tip`` selects tag 55 and the fee goes into 56 or 57.
    ``acquirer`` adds template 26 (global id, PAN, merchant id, criteria);
    ``nmid`` adds template 51 with the national repository id. ``extra`` adds
    more top-level elements (sorted in with the rest); ``currency`` and
    ``country`` exist so tests can make wrong ones. Raises :class:`ValueError`
    for values that cannot be written.
    """
    if static is None:
        static = amount is None
    elements: list[tuple[str, str]] = [("00", "01"), ("01", "11" if static else "12")]
    if acquirer is not None:
        elements.append(
            (
                "26",
                _template(
                    [("00", acquirer), ("01", merchant_pan), ("02", merchant_id), ("03", criteria)]
                ),
            )
        )
    if nmid is not None:
        elements.append(("51", _template([("00", QRIS_GLOBAL_ID), ("02", nmid), ("03", criteria)])))
    elements += [("52", mcc), ("53", currency)]
    if amount is not None:
        elements.append(("54", str(amount)))
    if tip is not None:
        elements.append(("55", _TIP_CODES[tip]))
        if tip == "fixed":
            if fee_fixed is None:
                raise ValueError("a fixed fee needs fee_fixed")
            elements.append(("56", str(fee_fixed)))
        elif tip == "percent":
            if fee_percent is None:
                raise ValueError("a percentage fee needs fee_percent")
            elements.append(("57", str(fee_percent)))
    elements += [("58", country), ("59", merchant_name), ("60", city)]
    if postal_code is not None:
        elements.append(("61", postal_code))
    additional = _template([("01", bill_number), ("05", reference_label), ("07", terminal_label)])
    if additional:
        elements.append(("62", additional))
    elements += list(extra)
    tags = [tag for tag, _ in elements]
    if len(set(tags)) != len(tags) or "63" in tags:
        raise ValueError("duplicate tag (or a hand-made 63)")
    body = "".join(_tlv(tag, value) for tag, value in sorted(elements, key=lambda e: e[0]))
    return append_crc(body)
