"""Outbound rate limits: a global rate and a per-chat rate with a small burst."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable


class TokenBucket:
    def __init__(self, rate: float, burst: float, clock: Callable[[], float] = time.monotonic):
        self.rate = rate
        self.burst = burst
        self.tokens = burst
        self.clock = clock
        self.updated = clock()

    def wait_time(self) -> float:
        """Take a token, returning how long to wait before using it."""
        now = self.clock()
        self.tokens = min(self.burst, self.tokens + (now - self.updated) * self.rate)
        self.updated = now
        self.tokens -= 1
        return 0.0 if self.tokens >= 0 else -self.tokens / self.rate


class RateLimiter:
    """``await limiter.acquire(chat_id)`` before each send."""

    def __init__(
        self, per_second: float, per_chat_per_second: float | None = None, per_chat_burst: int = 1
    ) -> None:
        self.overall = TokenBucket(per_second, max(per_second, 1.0))
        self.per_chat_rate = per_chat_per_second
        self.per_chat_burst = per_chat_burst
        self.chats: dict[str, TokenBucket] = {}

    async def acquire(self, chat_id: str) -> None:
        wait = self.overall.wait_time()
        if self.per_chat_rate:
            bucket = self.chats.get(chat_id)
            if bucket is None:
                if len(self.chats) > 50_000:  # forget idle chats
                    self.chats.clear()
                bucket = self.chats[chat_id] = TokenBucket(self.per_chat_rate, self.per_chat_burst)
            wait = max(wait, bucket.wait_time())
        if wait > 0:
            await asyncio.sleep(wait)
