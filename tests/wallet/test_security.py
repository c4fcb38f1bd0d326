"""PIN and OTP rules, with the injectable clock."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest
from sqlalchemy import select

from storage.schema import customers, otp_challenges
from tests.conftest import Env
from tests.wallet.helpers import new_customer, next_phone
from wallet.customers import NewCustomer
from wallet.errors import (
    InvalidPin,
    OtpBlocked,
    OtpExpired,
    OtpInvalid,
    OtpNotRequested,
    OtpRateLimited,
    PinLocked,
    WeakPin,
)
from wallet.model import Status
from wallet.phone import normalize_phone
from wallet.security import pin_weakness


@pytest.mark.parametrize(
    ("pin", "reason"),
    [
        ("111111", "repeated"),
        ("000000", "repeated"),
        ("123456", "sequence"),
        ("345678", "sequence"),
        ("987654", "sequence"),
        ("012345", "sequence"),
        ("170890", "birth_date"),  # 17 August 1990 as DDMMYY
        ("12345", "not_six_digits"),
        ("1234567", "not_six_digits"),
        ("12a456", "not_six_digits"),
        ("١٢٣٤٥٧", "not_six_digits"),  # Arabic-Indic digits are not ASCII digits
        ("246813", None),
        ("908172", None),
        ("199008", None),  # not DDMMYY of the birth date
    ],
)
def test_weak_pins(pin: str, reason: str | None) -> None:
    assert pin_weakness(pin, date(1990, 8, 17)) == reason


async def test_pin_is_hashed_with_argon2id_and_verified(env: Env) -> None:
    cid = await new_customer(env.wallet, pin="246813")
    stored = await env.db.read(
        lambda c: c.scalar(select(customers.c.pin_hash).where(customers.c.id == cid))
    )
    assert stored.startswith("$argon2id$") and "246813" not in stored
    await env.wallet.verify_pin(cid, "246813")


async def test_three_wrong_pins_lock_until_reset(env: Env) -> None:
    cid = await new_customer(env.wallet, pin="246813")
    with pytest.raises(InvalidPin) as e1:
        await env.wallet.verify_pin(cid, "000001")
    assert e1.value.attempts_left == 2
    await env.wallet.verify_pin(cid, "246813")  # a right PIN resets the count
    for left in (2, 1):
        with pytest.raises(InvalidPin) as e:
            await env.wallet.verify_pin(cid, "000001")
        assert e.value.attempts_left == left
    with pytest.raises(PinLocked):
        await env.wallet.verify_pin(cid, "000001")
    assert (await env.wallet.customer(cid)).status is Status.LOCKED
    with pytest.raises(PinLocked):  # even the right PIN is refused now
        await env.wallet.verify_pin(cid, "246813")
    customer = await env.wallet.reset_pin(cid, "975313", actor="customer:otp")
    assert customer.status is Status.ACTIVE and customer.failed_pin_attempts == 0
    await env.wallet.verify_pin(cid, "975313")
    with pytest.raises(InvalidPin):
        await env.wallet.verify_pin(cid, "246813")


async def test_reset_does_not_unblock_a_customer_blocked_by_support(env: Env) -> None:
    cid = await new_customer(env.wallet, pin="246813")
    await env.wallet.set_status(cid, Status.BLOCKED, actor="agent:rina")
    customer = await env.wallet.reset_pin(cid, "975313")
    assert customer.status is Status.BLOCKED


async def test_change_pin_checks_the_old_and_refuses_the_same(env: Env) -> None:
    cid = await new_customer(env.wallet, pin="246813")
    with pytest.raises(InvalidPin):
        await env.wallet.change_pin(cid, "000001", "975313")
    with pytest.raises(WeakPin) as err:
        await env.wallet.change_pin(cid, "246813", "246813")
    assert err.value.reason == "same_as_old"
    with pytest.raises(WeakPin) as err:
        await env.wallet.change_pin(cid, "246813", "170890")
    assert err.value.reason == "birth_date"
    await env.wallet.change_pin(cid, "246813", "975313")
    await env.wallet.verify_pin(cid, "975313")


async def test_weak_pin_at_registration_creates_nobody(env: Env) -> None:
    with pytest.raises(WeakPin):
        await env.wallet.register(NewCustomer(next_phone(), "Ani"), pin="123456")
    assert await env.db.read(lambda c: c.execute(select(customers.c.id)).first()) is None


async def test_otp_round_trip_and_single_use(env: Env) -> None:
    phone = normalize_phone(next_phone())
    issued = await env.wallet.otp.request(phone, "register")
    assert len(issued.code) == 6 and issued.code.isdigit()
    stored = await env.db.read(lambda c: c.scalar(select(otp_challenges.c.code_hash)))
    assert issued.code not in stored
    await env.wallet.otp.verify(phone, "register", issued.code)
    with pytest.raises(OtpNotRequested):  # used up
        await env.wallet.otp.verify(phone, "register", issued.code)


async def test_otp_expires_after_five_minutes(env: Env) -> None:
    phone = normalize_phone(next_phone())
    issued = await env.wallet.otp.request(phone, "register")
    env.clock.advance(timedelta(minutes=5))
    with pytest.raises(OtpExpired):
        await env.wallet.otp.verify(phone, "register", issued.code)


async def test_a_new_otp_replaces_the_old_one(env: Env) -> None:
    phone = normalize_phone(next_phone())
    first = await env.wallet.otp.request(phone, "register")
    second = await env.wallet.otp.request(phone, "register")
    if first.code != second.code:
        with pytest.raises(OtpInvalid):
            await env.wallet.otp.verify(phone, "register", first.code)
    await env.wallet.otp.verify(phone, "register", second.code)


async def test_three_otp_requests_per_wib_day(env: Env) -> None:
    # 4 December 2026, 23:00 WIB = 16:00 UTC
    env.clock.set(datetime(2026, 12, 4, 16, 0, tzinfo=UTC))
    phone = normalize_phone(next_phone())
    left = [(await env.wallet.otp.request(phone, "register")).requests_left_today for _ in range(3)]
    assert left == [2, 1, 0]
    with pytest.raises(OtpRateLimited) as err:
        await env.wallet.otp.request(phone, "register")
    assert err.value.retry_at == datetime(2026, 12, 4, 17, 0, tzinfo=UTC)  # WIB midnight
    env.clock.set(datetime(2026, 12, 4, 17, 0, tzinfo=UTC))
    await env.wallet.otp.request(phone, "register")


async def test_three_wrong_otps_block_the_number_for_24_hours(env: Env) -> None:
    phone = normalize_phone(next_phone())
    issued = await env.wallet.otp.request(phone, "register")
    wrong = "000000" if issued.code != "000000" else "111111"
    for left in (2, 1):
        with pytest.raises(OtpInvalid) as e:
            await env.wallet.otp.verify(phone, "register", wrong)
        assert e.value.attempts_left == left
    with pytest.raises(OtpBlocked) as blocked:
        await env.wallet.otp.verify(phone, "register", wrong)
    assert blocked.value.until == env.clock.now() + timedelta(hours=24)
    with pytest.raises(OtpBlocked):  # the right code no longer helps
        await env.wallet.otp.verify(phone, "register", issued.code)
    with pytest.raises(OtpBlocked):
        await env.wallet.otp.request(phone, "register")
    env.clock.advance(timedelta(hours=23, minutes=59))
    assert await env.wallet.otp.blocked_until(phone) is not None
    env.clock.advance(timedelta(minutes=1))
    assert await env.wallet.otp.blocked_until(phone) is None
    again = await env.wallet.otp.request(phone, "register")
    await env.wallet.otp.verify(phone, "register", again.code)
