"""The HTTP disbursement adapter against a stand-in provider on loopback."""

from __future__ import annotations

from aiohttp.test_utils import TestServer

from bot.providers.disbursement_http import HttpDisbursement
from tests.standins.disbursement import FakeDisbursement
from wallet.disbursement import DisbursementError


async def test_inquiry_payout_idempotency_and_status() -> None:
    fake = FakeDisbursement("api-key")
    server = TestServer(fake.app())
    await server.start_server()
    client = HttpDisbursement(str(server.make_url("")), "api-key")
    try:
        assert await client.inquiry("014", "8880123456") == "DEWI LESTARI"
        try:
            await client.inquiry("014", "8880124040")
            raise AssertionError("an unknown account must be refused")
        except DisbursementError as err:
            assert err.reason == "not_found"
        first = await client.send("KPREF0000001", "014", "8880123456", 250_000)
        again = await client.send("KPREF0000001", "014", "8880123456", 250_000)
        assert first.status == again.status == "success" and first.serial == again.serial
        assert fake.requests == ["KPREF0000001", "KPREF0000001"]
        assert len(fake.payouts) == 1  # the retry paid nothing more
        assert (await client.send("KPREF0000002", "009", "7770001111", 1_000)).status == "failed"
        pending = await client.send("KPREF0000003", "002", "5550002222", 1_000)
        assert pending.status == "pending"
        fake.complete("KPREF0000003")
        done = await client.status("KPREF0000003")
        assert done.status == "success" and done.serial == "TRF-000003"
        assert (await client.status("KPNOSUCHREF1")).status == "failed"
        wrong_key = HttpDisbursement(str(server.make_url("")), "not-the-key")
        assert (await wrong_key.send("KPREF0000004", "014", "8880123456", 1)).status == "failed"
        await wrong_key.close()
    finally:
        await client.close()
        await server.close()
