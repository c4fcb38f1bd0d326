"""One-time passwords for registration and PIN reset.

6 digits from pyotp, stored as an HMAC (keyed with the server secret) and compared in
constant time; they expire after ``otp_ttl_minutes``; at most ``otp_max_requests_per_day``
requests per phone number per WIB day; ``otp_max_attempts`` wrong entries fail the attempt
and block the number for ``otp_block_hours``.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from datetime import datetime, timedelta

import pyotp
from sqlalchemy import Connection, func, select, update

from storage.db import Database
from storage.schema import otp_blocks, otp_challenges
from wallet.clock import Clock, as_utc, local_day_bounds
from wallet.config import SecuritySettings
from wallet.errors import (
    OtpBlocked,
    OtpError,
    OtpExpired,
    OtpInvalid,
    OtpNotRequested,
    OtpRateLimited,
)
from wallet.locks import xact_lock


@dataclass(frozen=True, slots=True)
class IssuedOtp:
    """What the OTP sender needs. The code exists only here, never at rest in clear."""

    phone: str
    purpose: str
    code: str
    expires_at: datetime
    requests_left_today: int


class OtpService:
    def __init__(self, db: Database, settings: SecuritySettings, clock: Clock, key: bytes) -> None:
        self.db = db
        self.settings = settings
        self.clock = clock
        self._key = key

    def _hash(self, phone: str, purpose: str, code: str) -> str:
        msg = f"{phone}|{purpose}|{code}".encode()
        return hmac.new(self._key, msg, hashlib.sha256).hexdigest()

    async def request(self, phone: str, purpose: str) -> IssuedOtp:
        """Issue a fresh OTP for ``phone`` (E.164), replacing any active one."""
        return await self.db.write(self.request_in, phone, purpose)

    def request_in(self, conn: Connection, phone: str, purpose: str) -> IssuedOtp:
        now = self.clock.now()
        xact_lock(conn, f"otp:{phone}")
        self._raise_if_blocked(conn, phone, now)
        start, end = local_day_bounds(now)
        used = int(
            conn.scalar(
                select(func.count())
                .select_from(otp_challenges)
                .where(otp_challenges.c.phone == phone)
                .where(otp_challenges.c.created_at >= start)
                .where(otp_challenges.c.created_at < end)
            )
            or 0
        )
        limit = self.settings.otp_max_requests_per_day
        if used >= limit:
            raise OtpRateLimited(end)
        conn.execute(
            update(otp_challenges)
            .where(otp_challenges.c.phone == phone)
            .where(otp_challenges.c.purpose == purpose)
            .where(otp_challenges.c.state == "active")
            .values(state="superseded")
        )
        code = pyotp.HOTP(pyotp.random_base32(), digits=6).at(0)
        expires_at = now + timedelta(minutes=self.settings.otp_ttl_minutes)
        conn.execute(
            otp_challenges.insert().values(
                phone=phone,
                purpose=purpose,
                code_hash=self._hash(phone, purpose, code),
                state="active",
                attempts=0,
                created_at=now,
                expires_at=expires_at,
            )
        )
        return IssuedOtp(phone, purpose, code, expires_at, limit - used - 1)

    async def verify(self, phone: str, purpose: str, code: str) -> None:
        """Return when ``code`` is right; otherwise raise an OtpError (after recording it)."""
        failure = await self.db.write(self.verify_in, phone, purpose, code)
        if failure is not None:  # raised after commit: the attempt is recorded
            raise failure

    def verify_in(self, conn: Connection, phone: str, purpose: str, code: str) -> OtpError | None:
        """Check ``code`` and record the outcome; the failure is returned, not raised, so
        the caller's transaction commits the count of wrong attempts."""
        now = self.clock.now()
        xact_lock(conn, f"otp:{phone}")
        self._raise_if_blocked(conn, phone, now)
        row = conn.execute(
            select(otp_challenges)
            .where(otp_challenges.c.phone == phone)
            .where(otp_challenges.c.purpose == purpose)
            .where(otp_challenges.c.state == "active")
            .order_by(otp_challenges.c.id.desc())
            .limit(1)
        ).first()
        if row is None:
            return OtpNotRequested()
        this = update(otp_challenges).where(otp_challenges.c.id == row.id)
        if as_utc(row.expires_at) <= now:
            conn.execute(this.values(state="expired"))
            return OtpExpired()
        if hmac.compare_digest(row.code_hash, self._hash(phone, purpose, code.strip())):
            conn.execute(this.values(state="used"))
            return None
        attempts = row.attempts + 1
        if attempts < self.settings.otp_max_attempts:
            conn.execute(this.values(attempts=attempts))
            return OtpInvalid(self.settings.otp_max_attempts - attempts)
        until = now + timedelta(hours=self.settings.otp_block_hours)
        conn.execute(this.values(attempts=attempts, state="failed"))
        conn.execute(otp_blocks.delete().where(otp_blocks.c.phone == phone))
        conn.execute(otp_blocks.insert().values(phone=phone, until=until, reason="otp_attempts"))
        return OtpBlocked(until)

    async def blocked_until(self, phone: str) -> datetime | None:
        until = await self.db.read(
            lambda conn: conn.scalar(select(otp_blocks.c.until).where(otp_blocks.c.phone == phone))
        )
        if until is None or as_utc(until) <= self.clock.now():
            return None
        return as_utc(until)

    def _raise_if_blocked(self, conn: Connection, phone: str, now: datetime) -> None:
        until = conn.scalar(select(otp_blocks.c.until).where(otp_blocks.c.phone == phone))
        if until is not None and as_utc(until) > now:
            raise OtpBlocked(as_utc(until))
