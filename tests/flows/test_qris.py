"""QRIS payload parsing: real published payloads, mutations, tips and fees, round trips."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flows.qris import (
    CODES,
    MAX_PAYLOAD_CHARS,
    QrisError,
    QrisPayment,
    append_crc,
    build_qris,
    crc16_ccitt,
    parse_qris,
)

# Real payloads published in public repositories, not made by our code. Where each
# one comes from (repository and path) is in the comments of that file: GoPay,
# DANA (x2), BNI (static); OVO (x4, with tips and fees), AstraPay, Xendit/LinkAja
# (dynamic); and an AstraPay sample published with a stale CRC.
DATA = Path(__file__).resolve().parents[1] / "data" / "qris" / "real_payloads.txt"


def _load_real() -> dict[str, str]:
    """``label = payload`` lines of the fixture (sources are in its comments)."""
    payloads: dict[str, str] = {}
    for line in DATA.read_text(encoding="utf-8").splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        label, payload = line.split(" = ", 1)
        payloads[label] = payload
    return payloads


REAL = _load_real()
VALID = {label: p for label, p in REAL.items() if label != "astrapay_stale_crc"}


def _bitwise_crc(data: bytes) -> int:
    """A second, deliberately naive CRC-16/CCITT-FALSE to check the table-driven one."""
    crc = 0xFFFF
    for byte in data:
        crc ^= byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) if crc & 0x8000 else (crc << 1)
            crc &= 0xFFFF
    return crc


def _code(text: object) -> str:
    with pytest.raises(QrisError) as info:
        parse_qris(text)  # type: ignore[arg-type]
    assert info.value.code in CODES
    return info.value.code


def _reseal(payload: str) -> str:
    """The payload with its CRC recomputed (for mutations that must pass the CRC)."""
    assert payload[-8:-4] == "6304"
    return append_crc(payload[:-8])


# --------------------------------------------------------------------------- real payloads


@dataclass(frozen=True)
class Expected:
    merchant_name: str
    city: str
    nmid: str | None
    mcc: str
    static: bool
    amount: int | None
    acquirers: tuple[str, ...]
    postal_code: str | None
    criteria: str
    tip: str | None = None
    fee_fixed: int | None = None
    fee_percent: Decimal | None = None


EXPECTED = {
    "gopay_static": Expected(
        "Anjani Falisha Kikanaya,",
        "MALANG",
        "ID1025375302797",
        "5815",
        True,
        None,
        ("COM.GO-JEK.WWW", "ID.CO.QRIS.WWW"),
        "65139",
        "UMI",
    ),
    "dana_static": Expected(
        "Warung Sayur Bu Sugeng",
        "Kab. Demak",
        "ID1020017611473",
        "5812",
        True,
        None,
        ("ID.DANA.WWW", "ID.CO.QRIS.WWW"),
        "59567",
        "UMI",
    ),
    "dana_static_2": Expected(
        "Saifullah.id",
        "Kota Pontianak",
        "ID1019004699079",
        "4814",
        True,
        None,
        ("ID.DANA.WWW", "ID.CO.QRIS.WWW"),
        "78124",
        "UMI",
    ),
    "bni_static": Expected(
        "VFS GLOBAL 6",
        "JAKARTA SELATAN",
        "ID2022233782269",
        "4722",
        True,
        None,
        ("ID.CO.BNI.WWW", "ID.CO.QRIS.WWW"),
        "12940",
        "UBE",
    ),
    "ovo_dynamic_fee_percent": Expected(
        "Tims Donuts",
        "Jakarta Barat",
        "ID1020041698835",
        "5812",
        False,
        500_000,
        ("id.ovo", "ID.OR.GPNQR.WWW"),
        "11610",
        "UKE",
        tip="percent",
        fee_percent=Decimal("0.7"),
    ),
    "ovo_dynamic_fee_fixed": Expected(
        "Tims Donuts",
        "Jakarta Barat",
        "ID1020041698835",
        "5812",
        False,
        100_000,
        ("id.ovo", "ID.OR.GPNQR.WWW"),
        "11610",
        "UKE",
        tip="fixed",
        fee_fixed=7000,
    ),
    "ovo_dynamic_tip_prompt": Expected(
        "Tims Donuts",
        "Jakarta Barat",
        "ID1020041698835",
        "5812",
        False,
        100_000,
        ("id.ovo", "ID.OR.GPNQR.WWW"),
        "11610",
        "UKE",
        tip="prompt",
    ),
    "ovo_dynamic": Expected(
        "Tims Donuts",
        "Jakarta Barat",
        "ID1020041698835",
        "5812",
        False,
        500_000,
        ("id.ovo", "ID.OR.GPNQR.WWW"),
        "11610",
        "UKE",
    ),
    "astrapay_dynamic": Expected(
        "AUTO2000 Bintaro",
        "Tangerang",
        "ID2021071980399",
        "7538",
        False,
        4_548_051,
        ("ID.CO.ASTRAPAY.WWW", "ID.CO.QRIS.WWW"),
        "15118",
        "UBE",
    ),
    "xendit_dynamic": Expected(
        "Placeholder merchant",
        "Jakarta",
        None,  # template 51 holds a placeholder "000000000000000", not an NMID
        "5499",
        False,
        4000,
        ("ID.LINKAJA.WWW", "ID.OR.GPNQR.WWW"),
        "123456",
        "UME",
    ),
}


def test_every_valid_real_payload_has_an_expectation() -> None:
    assert set(EXPECTED) == set(VALID)
    assert len(VALID) >= 4


@pytest.mark.parametrize("label", sorted(VALID))
def test_real_payloads_have_correct_crcs(label: str) -> None:
    payload = VALID[label]
    body = payload[:-4].encode("utf-8")
    assert f"{_bitwise_crc(body):04X}" == payload[-4:]
    assert crc16_ccitt(body) == _bitwise_crc(body)


@pytest.mark.parametrize("label", sorted(VALID))
def test_real_payloads_parse(label: str) -> None:
    payload = VALID[label]
    want = EXPECTED[label]
    got = parse_qris(payload)
    assert got.merchant_name == want.merchant_name
    assert got.city == want.city
    assert got.nmid == want.nmid
    assert got.mcc == want.mcc
    assert got.static is want.static
    assert got.amount == want.amount
    assert got.acquirers == want.acquirers
    assert got.postal_code == want.postal_code
    assert got.criteria == want.criteria
    assert got.tip == want.tip
    assert got.fee_fixed == want.fee_fixed
    assert got.fee_percent == want.fee_percent
    assert got.currency == "360"
    assert got.country == "ID"
    assert got.crc == payload[-4:]
    assert got.payload == payload
    assert "".join(f"{t}{len(v):02d}{v}" for t, v in got.fields) == payload


def test_real_payload_details() -> None:
    gopay = parse_qris(REAL["gopay_static"])
    account = gopay.merchant_accounts[0]
    assert (account.tag, account.global_id, account.pan, account.merchant_id) == (
        "26",
        "COM.GO-JEK.WWW",
        "936009143403529964",
        "G403529964",
    )
    assert gopay.terminal_label == "A01"

    xendit = parse_qris(REAL["xendit_dynamic"])
    assert xendit.bill_number == "wLoc6DRGwAOgSkZ"
    assert xendit.terminal_label == "wLoc6DRGwAOgSkZ"
    assert xendit.field("54") == "4000"

    astrapay = parse_qris(REAL["astrapay_dynamic"])
    assert astrapay.bill_number == "211005010777015"
    assert dict(astrapay.additional_data)["98"] == "020921000045503011"

    ovo = parse_qris(REAL["ovo_dynamic_fee_fixed"])
    assert ovo.reference_label == "VCcCtqJ"


def test_real_fees() -> None:
    percent = parse_qris(REAL["ovo_dynamic_fee_percent"])
    assert percent.fee_for(500_000) == 3500  # 0.7 % of 500 000
    assert percent.fee_for(150) == 1  # 1.05 rounds half-up to 1
    assert parse_qris(REAL["ovo_dynamic_fee_fixed"]).fee_for(100_000) == 7000
    assert parse_qris(REAL["ovo_dynamic_tip_prompt"]).fee_for(100_000) == 0
    assert parse_qris(REAL["ovo_dynamic"]).fee_for(500_000) == 0


def test_published_payload_with_stale_crc_is_refused() -> None:
    assert _code(REAL["astrapay_stale_crc"]) == "bad_crc"
    # … and it is otherwise well formed: with the right CRC it parses.
    fixed = parse_qris(_reseal(REAL["astrapay_stale_crc"]))
    assert fixed.merchant_name == "TEST MERCHANT"
    assert fixed.crc == "7F7A"


def test_surrounding_whitespace_from_a_scanner_is_ignored() -> None:
    payload = REAL["dana_static"]
    assert parse_qris(f"  {payload}\r\n").payload == payload


def test_lowercase_crc_is_accepted() -> None:
    payload = REAL["ovo_dynamic"]
    assert parse_qris(payload[:-4] + payload[-4:].lower()).crc == payload[-4:]


# --------------------------------------------------------------------------- mutations


def _crc_marker(payload: str) -> range:
    """Positions of the "6304" that introduces the CRC value."""
    return range(len(payload) - 8, len(payload) - 4)


@pytest.mark.parametrize("label", sorted(VALID))
def test_any_changed_character_is_a_bad_crc(label: str) -> None:
    # A changed "6304" marker itself can read as a length running past the end
    # ("6314…") or as a different tag; every other position must be caught by the CRC.
    payload = VALID[label]
    for pos in range(len(payload)):
        if pos in _crc_marker(payload):
            continue
        replacement = "7" if payload[pos] != "7" else "8"
        mutated = payload[:pos] + replacement + payload[pos + 1 :]
        assert _code(mutated) == "bad_crc", (pos, mutated)


@settings(max_examples=200, deadline=None)
@given(
    label=st.sampled_from(sorted(VALID)),
    where=st.floats(min_value=0, max_value=1, exclude_max=True),
    replacement=st.characters(min_codepoint=0x20, max_codepoint=0x7E),
)
def test_random_changed_character_is_a_bad_crc(label: str, where: float, replacement: str) -> None:
    payload = VALID[label]
    pos = int(where * len(payload))
    if pos in _crc_marker(payload) or payload[pos] == replacement:
        return
    if pos >= len(payload) - 4 and payload[pos].upper() == replacement.upper():
        return  # the CRC's hex digits are read case-insensitively: "AF" and "Af" agree
    assert _code(payload[:pos] + replacement + payload[pos + 1 :]) == "bad_crc"


def test_non_ascii_replacement_is_a_bad_crc() -> None:
    payload = REAL["gopay_static"]
    pos = payload.index("MALANG")
    assert _code(payload[:pos] + "Ḿ" + payload[pos + 1 :]) == "bad_crc"


@pytest.mark.parametrize("label", sorted(VALID))
def test_truncation(label: str) -> None:
    """Cut inside an element: truncated. Cut between elements: the CRC is missing."""
    payload = VALID[label]
    boundaries = set()
    pos = 0
    for _tag, value in parse_qris(payload).fields:
        pos += 4 + len(value)
        boundaries.add(pos)
    assert pos == len(payload)
    for cut in range(4, len(payload)):
        expected = "bad_crc" if cut in boundaries else "truncated"
        assert _code(payload[:cut]) == expected, cut
    for cut in range(4):
        assert _code(payload[:cut]) == "not_qris"


def test_wrong_currency_with_a_valid_crc() -> None:
    dollars = _reseal(REAL["gopay_static"].replace("5303360", "5303840"))
    assert _code(dollars) == "wrong_currency"
    # Xendit puts 53 after 62; the check does not depend on order.
    baht = _reseal(REAL["xendit_dynamic"].replace("5303360", "5303764"))
    assert _code(baht) == "wrong_currency"
    assert _code(build_qris(merchant_name="Shop", city="Bangkok", currency="764")) == (
        "wrong_currency"
    )


@pytest.mark.parametrize(
    "text",
    [
        "",
        "   ",
        "https://example.com/pay?amount=10000",
        "http://qr.id/ab12",
        "Bayar 50rb ke warung ya",
        "0",
        "000",
        "hello 000201010211",
        "WIFI:S:home;T:WPA;P:secret;;",
        "0" * 10_000,
        "x" * 100_000,
    ],
)
def test_not_qris(text: str) -> None:
    assert _code(text) == "not_qris"


@pytest.mark.parametrize("value", [None, b"000201010211", 42, ["000201"]])
def test_not_text_is_not_qris(value: object) -> None:
    assert _code(value) == "not_qris"


def test_too_long_payload_is_bad_format() -> None:
    long = build_qris(merchant_name="A" * 99, city="B" * 99, bill_number="C" * 90)
    padded = _reseal(
        long[:-8] + "".join(f"{t}99{'x' * 99}" for t in ("80", "81", "82")) + long[-8:]
    )
    assert len(padded) > MAX_PAYLOAD_CHARS
    assert _code(padded) == "bad_format"


# --------------------------------------------------------------------------- amounts


@pytest.mark.parametrize(
    ("written", "rupiah"),
    [("10000", 10_000), ("10000.00", 10_000), ("10000.0", 10_000), ("10000.", 10_000), ("1", 1)],
)
def test_whole_rupiah_amounts(written: str, rupiah: int) -> None:
    assert parse_qris(build_qris(merchant_name="Toko", city="Bogor", amount=written)).amount == (
        rupiah
    )


@pytest.mark.parametrize(
    "written",
    ["10000.50", "10000.05", "0.99", "0", "0.00", "-5", "1e4", "1,000", "10.000,00", " 100",
     "10000.001", "12345678901234", ".5", "", "abc"],
)  # fmt: skip
def test_bad_amounts(written: str) -> None:
    assert _code(build_qris(merchant_name="Toko", city="Bogor", amount=written)) == "bad_amount"


def test_amount_with_cents_in_a_real_payload() -> None:
    payload = _reseal(REAL["ovo_dynamic"].replace("5406500000", "540850000.50"))
    assert _code(payload) == "bad_amount"
    whole = _reseal(REAL["ovo_dynamic"].replace("5406500000", "540850000.00"))
    assert parse_qris(whole).amount == 50_000


# --------------------------------------------------------------------------- tips and fees


def test_tip_prompt() -> None:
    got = parse_qris(build_qris(merchant_name="Kopi", city="Solo", amount=20_000, tip="prompt"))
    assert (got.tip, got.fee_fixed, got.fee_percent, got.fee_for(20_000)) == (
        "prompt",
        None,
        None,
        0,
    )


def test_fixed_fee() -> None:
    got = parse_qris(
        build_qris(merchant_name="Kopi", city="Solo", amount=20_000, tip="fixed", fee_fixed=1500)
    )
    assert (got.tip, got.fee_fixed, got.fee_for(20_000), got.fee_for(0)) == (
        "fixed",
        1500,
        1500,
        1500,
    )


@pytest.mark.parametrize(
    ("percent", "amount", "fee"),
    [
        ("2.5", 10_000, 250),
        ("2.5", 10_020, 251),  # 250.5 rounds half-up
        ("2.5", 10_019, 250),  # 250.475
        ("0.7", 150, 1),  # 1.05
        ("0.7", 71, 0),  # 0.497
        ("10", 5, 1),  # 0.5 rounds up
        ("99.99", 1_000_000, 999_900),
        ("0.01", 49, 0),
        ("5", 0, 0),
    ],
)
def test_percentage_fee(percent: str, amount: int, fee: int) -> None:
    got = parse_qris(
        build_qris(merchant_name="Kopi", city="Solo", tip="percent", fee_percent=percent)
    )
    assert got.tip == "percent"
    assert got.fee_percent == Decimal(percent)
    assert got.fee_for(amount) == fee


def test_fee_for_refuses_negative_amounts() -> None:
    got = parse_qris(REAL["ovo_dynamic_fee_fixed"])
    with pytest.raises(QrisError) as info:
        got.fee_for(-1)
    assert info.value.code == "bad_amount"


@pytest.mark.parametrize("fee", ["500.50", "0", "-1", "1e3", "abc"])
def test_bad_fixed_fee(fee: str) -> None:
    payload = build_qris(merchant_name="Kopi", city="Solo", tip="fixed", fee_fixed=fee)
    assert _code(payload) == "bad_amount"


@pytest.mark.parametrize("percent", ["0", "0.00", "100", "100.00", "abc", "5.555", "-1", "1e1"])
def test_bad_percentage_fee(percent: str) -> None:
    payload = build_qris(merchant_name="Kopi", city="Solo", tip="percent", fee_percent=percent)
    assert _code(payload) == "bad_amount"


def test_unknown_tip_indicator_or_missing_fee_is_bad_format() -> None:
    assert _code(build_qris(merchant_name="K", city="S", extra=[("55", "04")])) == "bad_format"
    assert _code(build_qris(merchant_name="K", city="S", extra=[("55", "02")])) == "bad_format"
    assert _code(build_qris(merchant_name="K", city="S", extra=[("55", "03")])) == "bad_format"


# --------------------------------------------------------------------------- structure


def test_non_ascii_merchant_name_counts_characters_and_crc_covers_utf8() -> None:
    name, city = "Warung Bu Śri ☕", "Dénpasar"
    payload = build_qris(merchant_name=name, city=city, postal_code="80111")
    assert f"59{len(name):02d}{name}" in payload  # 15 characters, 18 UTF-8 bytes
    assert len(name) == 15 and len(name.encode("utf-8")) == 18
    assert payload[-4:] == f"{_bitwise_crc(payload[:-4].encode('utf-8')):04X}"
    assert payload[-4:] != f"{_bitwise_crc(payload[:-4].encode('latin-1', 'replace')):04X}"
    got = parse_qris(payload)
    assert (got.merchant_name, got.city) == (name, city)
    # A producer that wrote the byte length instead is misaligned and refused.
    by_bytes = _reseal(payload.replace(f"5915{name}", f"5918{name}"))
    assert _code(by_bytes) in {"bad_format", "truncated"}


def test_built_payload_is_byte_exact() -> None:
    assert build_qris(
        merchant_name="KasPro Sandbox",
        city="Jakarta",
        mcc="5812",
        nmid="ID1020000000001",
        amount=25_000,
        postal_code="10110",
        terminal_label="A01",
    ) == append_crc(
        "000201"
        "010212"
        "2665" "0016ID.CO.KASPRO.WWW" "0118936000000000000001" "0212KP0000000001" "0303UMI"
        "5144" "0014ID.CO.QRIS.WWW" "0215ID1020000000001" "0303UMI"
        "52045812"
        "5303360"
        "540525000"
        "5802ID"
        "5914KasPro Sandbox"
        "6007Jakarta"
        "610510110"
        "62070703A01"
    )  # fmt: skip


def test_static_and_dynamic_builds() -> None:
    static = parse_qris(build_qris(merchant_name="Toko", city="Bogor"))
    assert static.static and static.amount is None and static.field("01") == "11"
    dynamic = parse_qris(build_qris(merchant_name="Toko", city="Bogor", amount=5000))
    assert not dynamic.static and dynamic.amount == 5000 and dynamic.field("01") == "12"
    no_amount = parse_qris(build_qris(merchant_name="Toko", city="Bogor", static=False))
    assert not no_amount.static and no_amount.amount is None
    fixed_static = parse_qris(
        build_qris(merchant_name="Toko", city="Bogor", amount=5000, static=True)
    )
    assert fixed_static.static and fixed_static.amount == 5000


def test_nmid_from_another_template_when_51_is_missing() -> None:
    payload = build_qris(
        merchant_name="Toko", city="Bogor", nmid=None, merchant_id="ID1020000000777"
    )
    got = parse_qris(payload)
    assert got.nmid == "ID1020000000777"
    assert got.acquirers == ("ID.CO.KASPRO.WWW",)
    assert parse_qris(build_qris(merchant_name="T", city="B", nmid=None)).nmid is None


@pytest.mark.parametrize(
    ("old", "new", "code"),
    [
        ("000201", "000202", "bad_format"),  # payload format indicator
        ("010211", "010213", "bad_format"),  # point of initiation
        ("52045812", "520458A2", "bad_format"),  # merchant category code
        ("5802ID", "5802SG", "bad_format"),
        ("5802ID", "", "missing_field"),
        ("5922Warung Sayur Bu Sugeng", "", "missing_field"),
        ("5922Warung Sayur Bu Sugeng", "5903   ", "missing_field"),
        ("6010Kab. Demak", "", "missing_field"),
        ("52045812", "", "missing_field"),
        ("5303360", "", "missing_field"),
        ("5303360", "5303IDR", "wrong_currency"),
        ("0011ID.DANA.WWW", "0011ID.DANA.WWWX", "bad_format"),  # nested length runs over
        ("5802ID", "5802ID5802ID", "bad_format"),  # duplicate tag
        ("5802ID", "5802ID\x005", "bad_format"),  # control character
    ],
)
def test_structure_errors(old: str, new: str, code: str) -> None:
    payload = REAL["dana_static"]
    assert old in payload
    mutated = payload.replace(old, new, 1)
    if old == "0011ID.DANA.WWW":
        mutated = mutated.replace("2657", "2658", 1)  # keep the outer length right
    assert _code(_reseal(mutated)) == code


def test_missing_merchant_account_information() -> None:
    payload = build_qris(merchant_name="Toko", city="Bogor", acquirer=None, nmid=None)
    assert _code(payload) == "missing_field"
    # A card-network primitive (tags 02-25) is merchant account information too.
    visa = build_qris(
        merchant_name="Toko", city="Bogor", acquirer=None, nmid=None, extra=[("02", "4000123")]
    )
    assert parse_qris(visa).acquirers == ()


def test_crc_that_is_not_last_or_missing() -> None:
    payload = REAL["dana_static"]
    assert _code(payload[:-8]) == "bad_crc"  # no CRC element at all
    assert _code(payload + "6304ABCD") == "bad_crc"
    assert _code(payload[:-4] + "58G7") == "bad_crc"  # not hex
    assert _code(payload[:-8] + "630558C71") == "bad_crc"  # CRC of the wrong length


def test_builder_refuses_what_it_cannot_write() -> None:
    with pytest.raises(ValueError, match="99"):
        build_qris(merchant_name="x" * 100, city="B")
    with pytest.raises(ValueError, match="duplicate"):
        build_qris(merchant_name="x", city="B", extra=[("59", "again")])
    with pytest.raises(ValueError, match="fee_fixed"):
        build_qris(merchant_name="x", city="B", tip="fixed")
    with pytest.raises(ValueError, match="fee_percent"):
        build_qris(merchant_name="x", city="B", tip="percent")


def test_crc_check_value() -> None:
    assert crc16_ccitt(b"123456789") == 0x29B1
    assert crc16_ccitt(b"") == 0xFFFF


# --------------------------------------------------------------------------- properties

_NAME_CHARS = st.characters(blacklist_categories=("Cc", "Cs"))
_names = st.text(_NAME_CHARS, min_size=1, max_size=25).filter(lambda s: s == s.strip() != "")
_cities = st.text(_NAME_CHARS, min_size=1, max_size=15).filter(lambda s: s == s.strip() != "")


@st.composite
def _tips(draw: st.DrawFn) -> tuple[str | None, int | None, Decimal | None]:
    tip = draw(st.sampled_from([None, "prompt", "fixed", "percent"]))
    if tip == "fixed":
        return tip, draw(st.integers(1, 10**9)), None
    if tip == "percent":
        cents = draw(st.integers(1, 9999))
        return tip, None, Decimal(cents) / 100
    return tip, None, None


@settings(max_examples=300, deadline=None)
@given(
    name=_names,
    city=_cities,
    amount=st.none() | st.integers(1, 10**12),
    static=st.none() | st.booleans(),
    tips=_tips(),
    mcc=st.from_regex(r"[0-9]{4}", fullmatch=True),
    postal=st.none() | st.from_regex(r"[0-9]{5}", fullmatch=True),
    bill=st.none() | st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), max_size=20),
)
def test_build_parse_round_trip(
    name: str,
    city: str,
    amount: int | None,
    static: bool | None,
    tips: tuple[str | None, int | None, Decimal | None],
    mcc: str,
    postal: str | None,
    bill: str | None,
) -> None:
    tip, fee_fixed, fee_percent = tips
    payload = build_qris(
        merchant_name=name,
        city=city,
        mcc=mcc,
        amount=amount,
        static=static,
        tip=tip,  # type: ignore[arg-type]
        fee_fixed=fee_fixed,
        fee_percent=fee_percent,
        postal_code=postal,
        bill_number=bill or None,
    )
    got = parse_qris(payload)
    assert isinstance(got, QrisPayment)
    assert (got.merchant_name, got.city, got.mcc, got.amount) == (name, city, mcc, amount)
    assert got.static is (amount is None if static is None else static)
    assert (got.tip, got.fee_fixed, got.fee_percent) == (tip, fee_fixed, fee_percent)
    assert got.postal_code == postal
    assert got.bill_number == (bill or None)
    assert got.nmid == "ID1020000000001"
    assert got.payload == payload
    assert got.crc == f"{_bitwise_crc(payload[:-4].encode('utf-8')):04X}"


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=600) | st.text(max_size=600).map(lambda s: "000201" + s))
def test_arbitrary_text_never_raises_anything_else(text: str) -> None:
    try:
        parse_qris(text)
    except QrisError as error:
        assert error.code in CODES


@settings(max_examples=300, deadline=None)
@given(
    label=st.sampled_from(sorted(VALID)),
    cuts=st.lists(
        st.tuples(st.integers(0, 300), st.integers(0, 8), st.text(max_size=6)), max_size=4
    ),
    reseal=st.booleans(),
)
def test_mangled_real_payloads_never_raise_anything_else(
    label: str, cuts: list[tuple[int, int, str]], reseal: bool
) -> None:
    text = VALID[label]
    for start, length, insert in cuts:
        text = text[:start] + insert + text[start + length :]
    if reseal and text.endswith(VALID[label][-8:]):
        text = _reseal(text)
    try:
        parse_qris(text)
    except QrisError as error:
        assert error.code in CODES


def test_what_counts_as_emvco_shaped() -> None:
    # Ends like a QRIS (a CRC element) but starts wrong: a damaged payload, not chat text.
    assert _code("hello6304ABCD") == "bad_crc"
    # Sealed properly but the payload format indicator is not first.
    assert _code(append_crc("010211" + "5303360")) == "bad_format"
