"""Run by test_crash.py in a child process: pays a bill through the engine and dies the
moment the biller has answered, before KasPro settled anything (like kill -9)."""

from __future__ import annotations

import asyncio
import os
import sys

from bot.convo import RecordingChannel, RecordingOtpSender
from bot.engine import Engine, Inbound
from bot.providers.digiflazz import DigiflazzBiller
from storage.db import Database
from wallet.billers import PayResult, Product
from wallet.config import load_settings
from wallet.service import Wallet


class DyingBiller(DigiflazzBiller):
    async def pay(self, ref_id: str, product: Product, customer_no: str, amount: int) -> PayResult:
        result = await super().pay(ref_id, product, customer_no, amount)
        sys.stdout.write(f"biller answered {result.status} for {ref_id}\n")
        sys.stdout.flush()
        os._exit(9)


async def main(url: str, aggregator: str, chat_id: str) -> None:
    settings = load_settings(database_url=url, security={"pin_hash_memory_kib": 1024,
                                                         "pin_hash_time_cost": 1})
    db = Database.from_url(url, pool_size=2)
    wallet = Wallet(db, settings, secret_key=b"crash-test")
    biller = DyingBiller(aggregator, "kaspro", "dev-key")
    engine = Engine(wallet, channels={"console": RecordingChannel()},
                    otp_sender=RecordingOtpSender(), biller=biller)
    steps = [("text", "menu"), ("choice", "bills"), ("choice", "pulsa"), ("choice", "self"),
             ("choice", "telkomsel50"), ("text", "ya"), ("text", "246813")]
    for n, (kind, value) in enumerate(steps):
        await engine.handle(Inbound("console", chat_id, f"crash-{n}", **{kind: value}))
    sys.stdout.write("the process was not killed\n")


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:4]))
