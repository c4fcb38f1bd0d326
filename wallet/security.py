"""PIN rules and hashing (argon2id). Hashing runs in a worker thread: it is CPU-bound."""

from __future__ import annotations

import asyncio
import os
from concurrent.futures import ThreadPoolExecutor
from datetime import date

from argon2 import PasswordHasher, Type
from argon2.exceptions import InvalidHashError, VerificationError

from wallet.config import SecuritySettings
from wallet.errors import WeakPin

_DIGITS = "0123456789"


def pin_weakness(pin: str, birth_date: date | None = None) -> str | None:
    """Why ``pin`` is not acceptable, or None. Reasons are codes a flow can explain."""
    if len(pin) != 6 or not pin.isascii() or not pin.isdigit():
        return "not_six_digits"
    if len(set(pin)) == 1:
        return "repeated"
    if pin in _DIGITS or pin in _DIGITS[::-1]:
        return "sequence"
    if birth_date is not None and pin == birth_date.strftime("%d%m%y"):
        return "birth_date"
    return None


def check_new_pin(pin: str, birth_date: date | None = None) -> None:
    reason = pin_weakness(pin, birth_date)
    if reason is not None:
        raise WeakPin(reason)


class PinHasher:
    def __init__(self, settings: SecuritySettings) -> None:
        self._hasher = PasswordHasher(
            time_cost=settings.pin_hash_time_cost,
            memory_cost=settings.pin_hash_memory_kib,
            parallelism=settings.pin_hash_parallelism,
            type=Type.ID,
        )
        # argon2 is CPU-bound (and releases the GIL): its own threads, one per core, so it
        # neither starves nor queues behind the database's worker threads.
        self._pool = ThreadPoolExecutor(
            max_workers=os.cpu_count() or 2, thread_name_prefix="argon2"
        )

    async def hash(self, pin: str) -> str:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, self._hasher.hash, pin)

    async def verify(self, stored: str, pin: str) -> bool:
        def _verify() -> bool:
            try:
                return self._hasher.verify(stored, pin)
            except (VerificationError, InvalidHashError):
                return False

        return await asyncio.get_running_loop().run_in_executor(self._pool, _verify)

    def needs_rehash(self, stored: str) -> bool:
        return self._hasher.check_needs_rehash(stored)
