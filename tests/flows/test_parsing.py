"""Chat input parsers: every accepted form and every rejection code."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import date

import pytest
from hypothesis import given
from hypothesis import strategies as st

from flows.parsing import (
    CODES,
    COMMANDS,
    ParseError,
    normalize_command,
    parse_amount,
    parse_birth_date,
    parse_email,
    parse_otp,
    parse_phone,
    parse_pin,
    parse_yes_no,
)

TODAY = date(2026, 5, 1)
HUGE = "1" * 100_000


def code_of(parse: Callable[[str], object], text: str) -> str:
    with pytest.raises(ParseError) as info:
        parse(text)
    assert info.value.code in CODES
    assert isinstance(info.value, ValueError)
    return info.value.code


def test_parse_error_carries_code_message_and_details() -> None:
    err = ParseError("too_young", "under age", min_age=17)
    assert (err.code, str(err), err.details) == ("too_young", "under age", {"min_age": 17})
    assert str(ParseError("yes_no")) == "yes_no"
    assert ParseError("yes_no").details == {}


# ----------------------------------------------------------------------------- phone


@pytest.mark.parametrize(
    "raw",
    [
        "081234567890",
        "6281234567890",
        "+6281234567890",
        "+62 812-3456-7890",
        "(0812) 3456 7890",
        "+62 (812) 3456-7890",
        "0812-3456-7890",
        "0812.3456.7890",
        "62 812 3456 7890",
        "+ 62 812 3456 7890",
        "  081234567890  ",
        "\t0812 3456 7890\n",
        "0812\u00a03456\u00a07890",  # non-breaking spaces
        "\u202a+62 812-3456-7890\u202c",  # bidi marks around a WhatsApp shared contact
        "0812\u200b34567890",  # zero-width space
    ],
)
def test_phone_forms_normalise_to_e164(raw: str) -> None:
    assert parse_phone(raw) == "+6281234567890"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("0811234567", "+62811234567"),
        ("08881234567", "+628881234567"),
        ("+6285212345678", "+6285212345678"),
    ],
)
def test_other_indonesian_mobile_prefixes(raw: str, expected: str) -> None:
    assert parse_phone(raw) == expected


@pytest.mark.parametrize(
    ("raw", "code"),
    [
        # foreign numbers
        ("+14155552671", "phone_not_indonesian"),
        ("+1 (415) 555-2671", "phone_not_indonesian"),
        ("+44 7911 123456", "phone_not_indonesian"),
        ("+65 9123 4567", "phone_not_indonesian"),
        # Indonesian, but not mobile
        ("0213456789", "phone_not_mobile"),
        ("021 3456789", "phone_not_mobile"),
        ("(021) 345-6789", "phone_not_mobile"),
        ("+62 21 3456789", "phone_not_mobile"),
        ("62213456789", "phone_not_mobile"),
        ("0800 1234567", "phone_not_mobile"),
        # malformed
        ("", "phone_format"),
        ("   ", "phone_format"),
        ("+", "phone_format"),
        ("62", "phone_format"),
        ("+62", "phone_format"),
        ("0812", "phone_format"),
        ("081234567", "phone_format"),
        ("08123456789012345", "phone_format"),
        ("0812345678901234567890", "phone_format"),
        ("abc", "phone_format"),
        ("0812abc4567890", "phone_format"),
        ("0812-3456-789O", "phone_format"),  # letter O
        ("no hp saya 081234567890", "phone_format"),
        ("++6281234567890", "phone_format"),
        ("62+81234567890", "phone_format"),
        ("0812/3456/7890", "phone_format"),
        ("+999 1234567", "phone_format"),
        ("٠٨١٢٣٤٥٦٧٨٩٠", "phone_format"),  # Arabic-Indic digits
        ("０８１２３４５６７８９０", "phone_format"),  # full-width digits
        ("0812²34567890", "phone_format"),  # superscript two (str.isdigit() is True)
        ("0" * 41, "phone_format"),
    ],
)
def test_phone_rejections_name_what_was_expected(raw: str, code: str) -> None:
    assert code_of(parse_phone, raw) == code


# ----------------------------------------------------------------------------- amount


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("50000", 50_000),
        ("50.000", 50_000),
        ("50,000", 50_000),
        ("50 000", 50_000),
        ("1.500", 1_500),
        ("1,500", 1_500),
        ("1.500.000", 1_500_000),
        ("1,500,000", 1_500_000),
        ("1", 1),
        ("Rp50.000", 50_000),
        ("Rp 50.000", 50_000),
        ("RP 50.000", 50_000),
        ("rp50000", 50_000),
        ("Rp.50.000", 50_000),
        ("rp. 50.000,-", 50_000),
        ("Rp 50.000.-", 50_000),
        ("50.000,-", 50_000),
        ("IDR 50000", 50_000),
        ("idr50.000", 50_000),
        ("50000 rupiah", 50_000),
        ("50.000 Rp", 50_000),
        ("50.000,00", 50_000),  # zero cents are whole rupiah
        ("50,000.00", 50_000),
        ("1,0", 1),
        ("50rb", 50_000),
        ("50 rb", 50_000),
        ("50RB", 50_000),
        ("50 ribu", 50_000),
        ("50 Ribu", 50_000),
        ("50 rebu", 50_000),
        ("50k", 50_000),
        ("50K", 50_000),
        ("50 k", 50_000),
        ("500rb", 500_000),
        ("1,5jt", 1_500_000),
        ("1.5jt", 1_500_000),
        ("1.5 juta", 1_500_000),
        ("1,5 juta", 1_500_000),
        ("2jt", 2_000_000),
        ("2 JT", 2_000_000),
        ("2jt.", 2_000_000),
        ("2,5rb", 2_500),
        ("Rp 50rb", 50_000),
        ("rp1,5jt", 1_500_000),
        ("50rb rupiah", 50_000),
        ("1,2345jt", 1_234_500),
        ("0.0001jt", 100),
        ("0,001rb", 1),
        ("1 juta 500 ribu", 1_500_000),
        ("1jt 500rb", 1_500_000),
        ("1jt500rb", 1_500_000),
        ("2 juta 50 ribu", 2_050_000),
        ("1,5jt 200rb", 1_700_000),
        ("  Rp 50.000  ", 50_000),
        ("Rp\u00a050.000", 50_000),
        ("\u200b50rb", 50_000),
    ],
)
def test_amount_forms(raw: str, expected: int) -> None:
    assert parse_amount(raw) == expected


@pytest.mark.parametrize(
    ("raw", "code"),
    [
        # cents
        ("50.000,50", "amount_has_cents"),
        ("50,000.50", "amount_has_cents"),
        ("1,5", "amount_has_cents"),
        ("1,50", "amount_has_cents"),
        ("0,5", "amount_has_cents"),
        ("1.500,5", "amount_has_cents"),
        ("0,00001rb", "amount_has_cents"),
        ("1,2345rb", "amount_has_cents"),
        ("1,0000001jt", "amount_has_cents"),
        # zero and negative
        ("0", "amount_not_positive"),
        ("000", "amount_not_positive"),
        ("Rp 0", "amount_not_positive"),
        ("0rb", "amount_not_positive"),
        ("0,0jt", "amount_not_positive"),
        ("-50000", "amount_not_positive"),
        ("- 50.000", "amount_not_positive"),
        ("-Rp 50.000", "amount_not_positive"),
        ("Rp -50.000", "amount_not_positive"),
        ("-1,5jt", "amount_not_positive"),
        ("-1,5", "amount_not_positive"),
        # nonsense
        ("", "amount_format"),
        ("   ", "amount_format"),
        ("Rp", "amount_format"),
        ("rp.", "amount_format"),
        ("IDR", "amount_format"),
        ("rupiah", "amount_format"),
        ("-", "amount_format"),
        ("--50000", "amount_format"),
        ("+50000", "amount_format"),
        ("abc", "amount_format"),
        ("lima puluh", "amount_format"),
        ("lima puluh ribu", "amount_format"),
        ("50rbx", "amount_format"),
        ("50kb", "amount_format"),
        ("rb", "amount_format"),
        ("jt50", "amount_format"),
        ("1.2.3", "amount_format"),
        ("1,2,3", "amount_format"),
        ("1.50", "amount_format"),  # a dot followed by two digits is no thousands group
        ("1.5", "amount_format"),
        ("1500.00", "amount_format"),
        ("50.00.000", "amount_format"),
        ("0.500", "amount_format"),
        ("1.500.000rb", "amount_format"),
        ("1,5,0jt", "amount_format"),
        (".5jt", "amount_format"),
        (",5", "amount_format"),
        ("50.", "amount_format"),
        ("1 juta 500", "amount_format"),
        ("1jt 2jt", "amount_format"),  # multipliers must fall
        ("500rb 1jt", "amount_format"),
        ("1jt 1000rb", "amount_format"),  # a lower term must stay below the one before
        ("1 00", "amount_format"),
        ("50 000 000 0", "amount_format"),
        ("50000 50000", "amount_format"),
        ("1e5", "amount_format"),
        ("0x10", "amount_format"),
        ("50_000", "amount_format"),
        ("Rp 50.000 untuk budi", "amount_format"),
        ("٥٠٠٠٠", "amount_format"),  # Arabic-Indic digits
        ("５００００", "amount_format"),  # full-width digits
        ("٥٠rb", "amount_format"),
        ("50²", "amount_format"),
        ("1" * 49, "amount_format"),
        ("inf", "amount_format"),
        ("NaN", "amount_format"),
    ],
)
def test_amount_rejections_name_what_was_expected(raw: str, code: str) -> None:
    assert code_of(parse_amount, raw) == code


@given(st.integers(min_value=1, max_value=10**15))
def test_amount_round_trips_indonesian_grouping(n: int) -> None:
    dotted = f"{n:,}".replace(",", ".")
    assert parse_amount(dotted) == n
    assert parse_amount(f"Rp {dotted},-") == n
    assert parse_amount(f"{n:,}") == n
    assert parse_amount(str(n)) == n


@given(st.integers(min_value=1, max_value=10**9))
def test_amount_in_thousands_with_decimal_comma(n: int) -> None:
    whole, rest = divmod(n, 1000)
    text = f"{whole},{rest:03d}rb"
    assert parse_amount(text) == n


@given(st.text(max_size=60))
def test_amount_never_raises_anything_but_parse_error(text: str) -> None:
    try:
        value = parse_amount(text)
    except ParseError as err:
        assert err.code in {"amount_format", "amount_not_positive", "amount_has_cents"}
    else:
        assert isinstance(value, int)
        assert value > 0


# ----------------------------------------------------------------------------- birth date


def birth(text: str, min_age: int = 17) -> date:
    return parse_birth_date(text, TODAY, min_age=min_age)


@pytest.mark.parametrize(
    "raw",
    [
        "17-08-1990",
        "17/08/1990",
        "17.08.1990",
        "17 8 1990",
        "17-8-1990",
        "17 - 08 - 1990",
        "17 08 1990.",
        "  17-08-1990  ",
        "17 Agustus 1990",
        "17 agustus 1990",
        "17 AGUSTUS 1990",
        "17 agt 1990",
        "17 Agt. 1990",
        "17 agu 1990",
        "17 August 1990",
        "17 Aug 1990",
        "17-Aug-1990",
        "17agt1990",
        "17 Agustus, 1990",
        "17th August 1990",
        "August 17, 1990",
        "August 17 1990",
        "Aug 17, 1990",
        "Aug. 17, 1990",
        "august 17th, 1990",
        "Agustus 17 1990",
        "1990-08-17",
        "1990/08/17",
        "1990.8.17",
        "17  Agustus\n1990",
    ],
)
def test_birth_date_forms(raw: str) -> None:
    assert birth(raw) == date(1990, 8, 17)


@pytest.mark.parametrize(
    ("month", "number"),
    [
        (name, number)
        for number, names in enumerate(
            [
                ["Januari", "January", "Jan"],
                ["Februari", "Pebruari", "February", "Feb", "Peb"],
                ["Maret", "March", "Mar"],
                ["April", "Apr"],
                ["Mei", "May"],
                ["Juni", "June", "Jun"],
                ["Juli", "July", "Jul"],
                ["Agustus", "August", "Agu", "Agt", "Aug"],
                ["September", "Sep", "Sept"],
                ["Oktober", "October", "Okt", "Oct"],
                ["November", "Nopember", "Nov", "Nop"],
                ["Desember", "December", "Des", "Dec"],
            ],
            start=1,
        )
        for name in names
    ],
)
def test_month_names_indonesian_and_english(month: str, number: int) -> None:
    expected = date(1990, number, 3)
    assert birth(f"3 {month} 1990") == expected
    assert birth(f"3 {month.upper()} 1990") == expected
    assert birth(f"{month} 3, 1990") == expected


def test_numeric_dates_are_always_day_first() -> None:
    assert birth("03-04-1990") == date(1990, 4, 3)
    assert code_of(lambda t: birth(t), "08-17-1990") == "date_impossible"


def test_leap_day() -> None:
    assert birth("29-02-2000") == date(2000, 2, 29)
    assert code_of(lambda t: birth(t), "29-02-2001") == "date_impossible"


@pytest.mark.parametrize(
    ("raw", "code"),
    [
        # two-digit (or otherwise not four-digit) years
        ("17-08-90", "date_format"),
        ("17/8/90", "date_format"),
        ("17 Agustus 90", "date_format"),
        ("August 17, 90", "date_format"),
        ("17-08-01990", "date_format"),
        ("17-08-199", "date_format"),
        # unreadable
        ("", "date_format"),
        ("   ", "date_format"),
        ("17081990", "date_format"),
        ("17 Agustus", "date_format"),
        ("Agustus 1990", "date_format"),
        ("17 Agustusan 1990", "date_format"),
        ("17 foo 1990", "date_format"),
        ("tujuh belas agustus 1990", "date_format"),
        ("1990-08/17", "date_format"),
        ("17-08-1990-01", "date_format"),
        ("117-08-1990", "date_format"),
        ("kemarin", "date_format"),
        ("١٧-٠٨-١٩٩٠", "date_format"),  # Arabic-Indic digits
        ("１７-０８-１９９０", "date_format"),  # full-width digits
        ("1" * 10_000, "date_format"),
        # impossible
        ("31-02-1990", "date_impossible"),
        ("30 Februari 1990", "date_impossible"),
        ("31-04-1990", "date_impossible"),
        ("0-1-1990", "date_impossible"),
        ("32-01-1990", "date_impossible"),
        ("17-13-1990", "date_impossible"),
        ("17-00-1990", "date_impossible"),
        ("0000-01-01", "date_impossible"),
        ("01-01-1800", "date_impossible"),
        ("30-04-1905", "date_impossible"),  # 121 today
        # future
        ("02-05-2026", "date_in_future"),
        ("01-01-2030", "date_in_future"),
        ("01-01-9999", "date_in_future"),
        # too young
        ("01-05-2026", "too_young"),  # born today
        ("02-05-2009", "too_young"),  # turns 17 tomorrow
        ("01-01-2015", "too_young"),
    ],
)
def test_birth_date_rejections(raw: str, code: str) -> None:
    assert code_of(lambda t: birth(t), raw) == code


def test_age_boundaries() -> None:
    assert birth("01-05-2009") == date(2009, 5, 1)  # 17 today
    assert birth("02-05-1906") == date(1906, 5, 2)  # 119
    assert birth("01-05-1906") == date(1906, 5, 1)  # 120 today
    assert code_of(lambda t: birth(t), "01-05-1905") == "date_impossible"  # 121 today


def test_too_young_reports_the_minimum_age_and_min_age_is_configurable() -> None:
    with pytest.raises(ParseError) as info:
        birth("01-01-2010")
    assert info.value.code == "too_young"
    assert info.value.details == {"min_age": 17}
    assert birth("01-01-2010", min_age=16) == date(2010, 1, 1)
    assert code_of(lambda t: birth(t, min_age=21), "02-05-2005") == "too_young"
    assert birth("01-05-2005", min_age=21) == date(2005, 5, 1)


def test_born_on_29_february_turns_a_year_older_on_1_march() -> None:
    assert parse_birth_date("29-02-2008", date(2025, 3, 1)) == date(2008, 2, 29)
    with pytest.raises(ParseError, match="too_young"):
        parse_birth_date("29-02-2008", date(2025, 2, 28))


# ----------------------------------------------------------------------------- email


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("budi@gmail.com", "budi@gmail.com"),
        ("  budi@gmail.com  ", "budi@gmail.com"),
        ("Budi.Santoso@Gmail.COM", "Budi.Santoso@gmail.com"),
        ("siti+kaspro@kaspro.co.id", "siti+kaspro@kaspro.co.id"),
    ],
)
def test_email_is_normalised(raw: str, expected: str) -> None:
    assert parse_email(raw) == expected


@pytest.mark.parametrize(
    "raw",
    [
        "",
        "budi",
        "budi@",
        "@gmail.com",
        "budi@gmail",
        "budi @gmail.com",
        "budi@@gmail.com",
        "budi@gmail.com.",
        "budi@localhost",
        "Budi <budi@gmail.com>",
        "email saya budi@gmail.com",
        "a" * 300 + "@gmail.com",
        HUGE,
    ],
)
def test_bad_email(raw: str) -> None:
    assert code_of(parse_email, raw) == "email_format"


# ----------------------------------------------------------------------------- yes / no

YES = ["ya", "y", "iya", "yes", "ok", "oke", "okay", "setuju", "benar", "betul", "lanjut"]
NO = ["tidak", "tdk", "no", "n", "nggak", "gak", "enggak", "bukan", "salah"]


@pytest.mark.parametrize("word", YES)
@pytest.mark.parametrize("dress", ["{}", "{}.", "{}!", " {} ", "{}!!", "*{}*", "\n{}\n"])
def test_yes(word: str, dress: str) -> None:
    assert parse_yes_no(dress.format(word)) is True
    assert parse_yes_no(dress.format(word.upper())) is True
    assert parse_yes_no(dress.format(word.title())) is True


@pytest.mark.parametrize("word", NO)
@pytest.mark.parametrize("dress", ["{}", "{}.", "{}!", " {} ", "{}...", '"{}"'])
def test_no(word: str, dress: str) -> None:
    assert parse_yes_no(dress.format(word)) is False
    assert parse_yes_no(dress.format(word.upper())) is False


@pytest.mark.parametrize(
    "raw",
    [
        "",
        "  ",
        "?",
        "batal",  # cancel is a command, not an answer
        "cancel",
        "mungkin",
        "maybe",
        "ya tidak",
        "ya ya",
        "yaa tapi",
        "yes please send it to my other number",
        "o.k",
        "1",
        HUGE,
    ],
)
def test_not_yes_or_no(raw: str) -> None:
    assert code_of(parse_yes_no, raw) == "yes_no"


# ----------------------------------------------------------------------------- PIN / OTP


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("123456", "123456"), (" 123456 ", "123456"), ("123 456", "123456"), ("000000", "000000")],
)
def test_pin(raw: str, expected: str) -> None:
    assert parse_pin(raw) == expected


@pytest.mark.parametrize(
    "raw",
    [
        "",
        "12345",
        "1234567",
        "12345a",
        "abcdef",
        "123-456",
        "12.3456",
        "+123456",
        "١٢٣٤٥٦",
        "１２３４５６",
        "12345²",
        HUGE,
    ],
)
def test_bad_pin(raw: str) -> None:
    assert code_of(parse_pin, raw) == "pin_format"


@pytest.mark.parametrize(
    "raw", ["123456", " 123456 ", "123 456", "123-456", "123 - 456", "1 2 3 4 5 6", "12-34-56"]
)
def test_otp(raw: str) -> None:
    assert parse_otp(raw) == "123456"


@pytest.mark.parametrize(
    "raw",
    [
        "",
        "12345",
        "1234567",
        "123 4567",
        "-123456",
        "123456-",
        "123_456",
        "123.456",
        "12345a",
        "kode 123456",
        "١٢٣٤٥٦",
        "１２３４５６",
        HUGE,
    ],
)
def test_bad_otp(raw: str) -> None:
    assert code_of(parse_otp, raw) == "otp_format"


# ----------------------------------------------------------------------------- commands


@pytest.mark.parametrize(
    ("raw", "command"),
    [
        ("menu", "menu"),
        ("Menu", "menu"),
        ("MENU", "menu"),
        ("menu utama", "menu"),
        ("Menu  Utama", "menu"),
        ("home", "menu"),
        ("start", "menu"),
        ("/start", "menu"),
        ("/start@KasProBot", "menu"),
        ("/menu", "menu"),
        ("menu.", "menu"),
        ("batal", "cancel"),
        ("Batal!", "cancel"),
        ("/batal", "cancel"),
        ("batal 🙏", "cancel"),
        ("cancel", "cancel"),
        ("stop", "cancel"),
        ("keluar", "cancel"),
        ("help", "help"),
        ("/help", "help"),
        ("bantuan", "help"),
        ("tolong", "help"),
        ("tolong!", "help"),
        ("?", "help"),
        ("??", "help"),
        (" ? ", "help"),
        ("bahasa", "language"),
        ("language", "language"),
        ("english", "language"),
        ("English", "language"),
        ("indonesia", "language"),
        ("ganti bahasa", "language"),
        ("cs", "agent"),
        ("CS", "agent"),
        ("agen", "agent"),
        ("agent", "agent"),
        ("operator", "agent"),
        ("manusia", "agent"),
        ("human", "agent"),
        ("bicara dengan cs", "agent"),
        ("Bicara dengan CS.", "agent"),
        ("talk to a person", "agent"),
        ("talk to agent", "agent"),
        ("\u200bmenu", "menu"),
    ],
)
def test_commands(raw: str, command: str) -> None:
    assert normalize_command(raw) == command


@pytest.mark.parametrize(
    "raw",
    [
        "",
        "   ",
        "!",
        "/",
        "?!",
        "saya mau batal transfer kemarin",
        "batal transfer",
        "menu apa saja?",
        "tolong kirim uang",
        "help me with my transfer",
        "/start@bot something",
        "bat al",
        "ya",
        "50rb",
        "menu " * 100,
        HUGE,
    ],
)
def test_not_commands(raw: str) -> None:
    assert normalize_command(raw) is None


def test_every_command_phrase_is_recognised_as_typed() -> None:
    for phrase, command in COMMANDS.items():
        assert normalize_command(phrase) == command
        assert normalize_command(f"/{phrase}") == command
        assert normalize_command(f"{phrase.upper()}!") == command


# ----------------------------------------------------------------------------- robustness


PARSERS: list[Callable[[str], object]] = [
    parse_phone,
    parse_amount,
    lambda t: parse_birth_date(t, TODAY),
    parse_email,
    parse_yes_no,
    parse_pin,
    parse_otp,
]


@pytest.mark.parametrize("parse", PARSERS)
@pytest.mark.parametrize(
    "raw",
    [
        "1" * 1_000_000,
        "1." * 500_000,
        "1 " * 500_000,
        "a" * 1_000_000,
        "\u200b" * 1_000_000 + "1",
        "-" * 1_000_000,
    ],
)
def test_very_long_inputs_are_refused_quickly(parse: Callable[[str], object], raw: str) -> None:
    started = time.perf_counter()
    with pytest.raises(ParseError):
        parse(raw)
    assert time.perf_counter() - started < 0.5
    started = time.perf_counter()
    assert normalize_command(raw) is None
    assert time.perf_counter() - started < 0.5


@pytest.mark.parametrize("parse", PARSERS)
@given(text=st.text(max_size=80))
def test_parsers_raise_only_parse_error(parse: Callable[[str], object], text: str) -> None:
    try:
        parse(text)
    except ParseError as err:
        assert err.code in CODES
