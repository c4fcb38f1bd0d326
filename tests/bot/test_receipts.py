"""Transaction receipts: the PNG and the chat text show the same, masked, content."""

from __future__ import annotations

import dataclasses
import io
import statistics
import time
from datetime import UTC, datetime, timedelta, timezone

import pytest
from PIL import Image, ImageChops

from bot import i18n, receipts
from bot.receipts import (
    STATUS_COLOURS,
    WIDTH,
    Receipt,
    masked_person,
    masked_phone,
    receipt_text,
    render_receipt,
)

AT = datetime(2026, 8, 16, 7, 3, tzinfo=UTC)  # 14:03 WIB
STATUS_WORDS = {
    ("posted", "id"): "Berhasil",
    ("posted", "en"): "Successful",
    ("pending", "id"): "Diproses",
    ("pending", "en"): "Processing",
    ("voided", "id"): "Dibatalkan",
    ("voided", "en"): "Cancelled",
}


def transfer(**changes: object) -> Receipt:
    r = Receipt(
        kind="bank_transfer",
        amount=2_000_000,
        fee=6_500,
        reference="KP7H2MX9QJ4T",
        created_at=AT,
        from_party=masked_person("Budi", "Santoso", "+6281234567890"),
        to_party="BCA •••• 7890 · " + masked_person("Siti", "Nurhaliza"),
        lines=[("note", "Bayar kos bulan Agustus"), ("bank", "Bank Central Asia (BCA)")],
    )
    return dataclasses.replace(r, **changes)  # type: ignore[arg-type]


def pixels(png: bytes) -> Image.Image:
    im = Image.open(io.BytesIO(png))
    im.load()
    return im


# ----------------------------------------------------------------------------- the model


def test_masking_helpers_use_wallet_masking() -> None:
    assert masked_person("Budi", "Santoso", "+6281234567890") == "Bu** Sa***** · +62812****7890"
    assert masked_person("Siti") == "Si**"
    assert masked_phone("+6281234567890") == "+62812****7890"


def test_receipt_defaults_and_validation() -> None:
    r = transfer()
    assert r.total is None and r.grand_total == 2_006_500  # amount + fee unless given
    assert transfer(amount=100_000).grand_total == 106_500
    assert transfer(total=1_993_500).grand_total == 1_993_500
    assert isinstance(r.lines, tuple) and hash(r)  # frozen, hashable
    with pytest.raises(ValueError, match="status"):
        transfer(status="done")
    with pytest.raises(ValueError, match="timezone"):
        transfer(created_at=datetime(2026, 8, 16, 14, 3))


def test_kind_titles_match_the_catalogue() -> None:
    for lang in ("id", "en"):
        for kind in receipts.KINDS:
            assert receipts._kind_title(lang, kind) == i18n.text(lang, f"kind.{kind}")


# ----------------------------------------------------------------------------- chat text


@pytest.mark.parametrize("lang", ["id", "en"])
def test_text_has_the_amount_parties_reference_and_time(lang: str) -> None:
    out = receipt_text(transfer(), lang)
    assert "Rp 2.000.000" in out and "Rp 6.500" in out and "Rp 2.006.500" in out
    assert "Bu** Sa***** · +62812****7890" in out and "Si** Nu*******" in out
    assert "+6281234567890" not in out and "Budi" not in out
    assert "KP7H2MX9QJ4T" in out
    assert ("16 Agu 2026 14:03 WIB" if lang == "id" else "16 Aug 2026 14:03 WIB") in out
    assert ("Transfer bank" if lang == "id" else "Bank transfer") in out
    assert ("Catatan: Bayar kos" if lang == "id" else "Note: Bayar kos") in out


@pytest.mark.parametrize(("status", "lang"), sorted(STATUS_WORDS))
def test_text_names_the_status_in_both_languages(status: str, lang: str) -> None:
    out = receipt_text(transfer(status=status), lang)
    assert STATUS_WORDS[status, lang] in out
    other = "en" if lang == "id" else "id"
    assert STATUS_WORDS[status, other] not in out


def test_text_for_an_unknown_language_is_indonesian_and_free_fee_says_so() -> None:
    out = receipt_text(transfer(fee=0, kind="something_new"), "fr")
    assert "Berhasil" in out and "Biaya: Gratis" in out and "Transaksi" in out
    assert "Fee: Free" in receipt_text(transfer(fee=0), "en")


# ----------------------------------------------------------------------------- the PNG


@pytest.mark.parametrize("lang", ["id", "en"])
def test_png_opens_with_the_expected_size_and_mode(lang: str) -> None:
    png = render_receipt(transfer(), lang)
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    im = pixels(png)
    assert im.format == "PNG" and im.mode == "P"
    assert im.width == WIDTH and 700 <= im.height <= 1100
    assert len(png) < 100_000


def test_rendering_is_deterministic_and_shows_the_amount() -> None:
    a = render_receipt(transfer(), "id")
    assert render_receipt(transfer(), "id") == a
    b = render_receipt(transfer(amount=2_500_000), "id")
    assert a != b
    one, two = pixels(a).convert("RGB"), pixels(b).convert("RGB")
    assert one.size == two.size  # same layout, different pixels
    box = ImageChops.difference(one, two).getbbox()
    assert box is not None
    assert box[1] > 150  # the header band is the same, the amount (and total) differ


def test_the_language_changes_the_picture() -> None:
    id_, en = pixels(render_receipt(transfer(), "id")), pixels(render_receipt(transfer(), "en"))
    diff = ImageChops.difference(id_.convert("RGB"), en.convert("RGB"))
    assert id_.size != en.size or diff.getbbox() is not None


@pytest.mark.parametrize("status", receipts.STATUSES)
def test_the_status_colour_is_drawn(status: str) -> None:
    im = pixels(render_receipt(transfer(status=status), "en")).convert("RGB")
    counts = {rgb: n for n, rgb in im.getcolors(maxcolors=1 << 16) or []}
    assert counts.get(STATUS_COLOURS[status], 0) > 1000  # the badge and the status word
    for other, colour in STATUS_COLOURS.items():
        if other != status:
            assert colour not in counts
    assert counts.get(receipts.WHITE, 0) > im.width * im.height // 2  # the paper stays white
    assert counts.get(receipts.BRAND, 0) >= WIDTH * 80  # the header band


def test_more_rows_make_a_taller_receipt() -> None:
    plain = pixels(render_receipt(transfer(lines=()), "id"))
    more = pixels(render_receipt(transfer(lines=[("token", "1234-5678-9012-3456-7890")]), "id"))
    assert more.height > plain.height


def test_missing_glyphs_fall_back_instead_of_boxes() -> None:
    base = render_receipt(transfer(to_party="Budi"), "id")
    # Emoji no font here has are left out; ZWJ and skin tones too.
    assert render_receipt(transfer(to_party="Budi 🎉👨‍👩‍👧👍🏽"), "id") == base
    # Letters no font has all become the same replacement mark.
    assert render_receipt(transfer(to_party="王小明"), "id") == render_receipt(
        transfer(to_party="李小龙"), "id"
    )
    # Scripts DejaVu has are drawn, not replaced.
    assert render_receipt(transfer(to_party="Дмитрий"), "id") != render_receipt(
        transfer(to_party="Светлан"), "id"
    )


LONG_NAME = "Muhammad Abdurrahman Wahyudi Kusumanegara Prawiranegara " * 6


@pytest.mark.parametrize("lang", ["id", "en"])
def test_long_and_strange_inputs_do_not_crash(lang: str) -> None:
    r = Receipt(
        kind="bill",
        amount=987_654_321_000_000,
        fee=-2_500,
        status="voided",
        reference="KP" + "X" * 500,
        created_at=datetime(2026, 1, 1, tzinfo=timezone(timedelta(hours=9))),
        from_party=masked_person(LONG_NAME, LONG_NAME, "+6281234567890"),
        to_party="王小明 · محمد عبدالله · Ελένη · नमस्ते · สวัสดี 👨‍👩‍👧‍👦🇮🇩\u200f\u202e",
        lines=[
            ("token", "1234-5678-9012-3456-7890"),
            ("serial", "A" * 5_000),
            ("note", "baris 1\nbaris 2\r\n\n\tbaris 3\x00\x1b[31m" + "🎉" * 500),
            ("Label yang sangat panjang sekali dan tidak muat di kolom label " * 3, ""),
            ("", "e\u0301 combining, \ufeff BOM, \ud7ff, \U0010fffd"),
            *((f"baris {i}", "y" * i) for i in range(100)),
        ],
    )
    png = render_receipt(r, lang)
    im = pixels(png)
    assert im.width == WIDTH and im.height < 2400  # bounded however long the input
    assert len(png) < 100_000
    out = receipt_text(r, lang)
    assert len(out) < 8_000 and "Rp 987.654.321.000.000" in out
    assert out.count("\n") < 40  # at most receipts.MAX_LINES extra rows


def test_renders_with_pillows_own_font_if_the_shipped_fonts_are_missing(
    monkeypatch: pytest.MonkeyPatch, tmp_path: object
) -> None:
    caches = (receipts._font, receipts._has_glyph, receipts._face)
    for c in caches:
        c.cache_clear()
    monkeypatch.setattr(receipts, "FONTS", tmp_path)
    try:
        im = pixels(render_receipt(transfer(to_party="José ✓ 王"), "id"))
        assert im.width == WIDTH and im.mode == "P"
    finally:
        monkeypatch.undo()
        for c in caches:
            c.cache_clear()


def test_rendering_is_fast(capsys: pytest.CaptureFixture[str]) -> None:
    samples = [
        transfer(),
        transfer(status="pending", kind="qris", to_party="Kopi Kenangan", lines=()),
        transfer(status="voided", kind="bill", lines=[("token", "1234-5678-9012-3456-7890")]),
    ]
    for r in samples:  # fonts and glyph checks are loaded once per process
        render_receipt(r, "id")
    times: list[float] = []
    for i in range(30):
        start = time.perf_counter()
        render_receipt(samples[i % 3], ("id", "en")[i % 2])
        times.append(time.perf_counter() - start)
    median = statistics.median(times)
    with capsys.disabled():
        print(
            f"\nreceipt PNG render: median {median * 1000:.1f} ms, max {max(times) * 1000:.1f} ms"
        )
    assert median < 0.5
