"""Customer identity: one phone number and one email per customer."""

from __future__ import annotations

import pytest

from tests.conftest import Env
from tests.wallet.helpers import next_phone
from wallet.customers import NewCustomer
from wallet.errors import AlreadyRegistered, InvalidPhoneNumber, ValidationFailed
from wallet.model import Status, Tier
from wallet.phone import normalize_phone


@pytest.mark.parametrize(
    "raw",
    ["081234567890", "6281234567890", "+62 812-3456-7890", "+6281234567890", " 0812 3456 7890 "],
)
def test_phone_formats_normalise_to_e164(raw: str) -> None:
    assert normalize_phone(raw) == "+6281234567890"


@pytest.mark.parametrize(
    "raw", ["", "abc", "0212345678", "+14155552671", "0812", "08123456789012345", "62"]
)
def test_non_mobile_or_foreign_numbers_are_refused(raw: str) -> None:
    with pytest.raises(InvalidPhoneNumber):
        normalize_phone(raw)


async def test_register_creates_an_active_regular_customer_with_a_wallet(env: Env) -> None:
    c = await env.wallet.register(
        NewCustomer("0812-1111-2222", "  Siti ", "Aminah", email="Siti@Example.com")
    )
    assert (c.phone, c.first_name, c.tier, c.status) == (
        "+6281211112222",
        "Siti",
        Tier.REGULAR,
        Status.ACTIVE,
    )
    assert (await env.wallet.balance(c.id)).balance == 0
    assert (await env.wallet.customer_by_phone("6281211112222")).id == c.id


async def test_same_phone_in_another_format_is_already_registered(env: Env) -> None:
    await env.wallet.register(NewCustomer("081211113333", "Siti"))
    with pytest.raises(AlreadyRegistered) as err:
        await env.wallet.register(NewCustomer("+62 812-1111-3333", "Other"))
    assert err.value.field == "phone"


async def test_email_is_unique_case_insensitively(env: Env) -> None:
    await env.wallet.register(NewCustomer(next_phone(), "Siti", email="siti@example.com"))
    with pytest.raises(AlreadyRegistered) as err:
        await env.wallet.register(NewCustomer(next_phone(), "Siti", email="SITI@example.COM"))
    assert err.value.field == "email"


async def test_concurrent_registrations_of_one_number_make_one_customer(env: Env) -> None:
    import asyncio

    phone = next_phone()
    results = await asyncio.gather(
        *(env.wallet.register(NewCustomer(phone, "Siti")) for _ in range(5)),
        return_exceptions=True,
    )
    made = [r for r in results if not isinstance(r, BaseException)]
    refused = [r for r in results if isinstance(r, AlreadyRegistered)]
    assert len(made) == 1 and len(refused) == 4


async def test_names_and_language_are_validated(env: Env) -> None:
    with pytest.raises(ValidationFailed):
        await env.wallet.register(NewCustomer(next_phone(), "   "))
    with pytest.raises(ValidationFailed):
        await env.wallet.register(NewCustomer(next_phone(), "Siti", language="fr"))
