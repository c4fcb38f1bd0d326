"""The WalletError hierarchy. Each error carries what a flow needs to explain it."""

from __future__ import annotations

from datetime import datetime


class WalletError(Exception):
    """Root of every error the wallet core raises on purpose."""

    code = "wallet_error"

    def __init__(self, message: str = "") -> None:
        super().__init__(message or self.code)


class ValidationFailed(WalletError):
    code = "invalid"


class InvalidAmount(ValidationFailed):
    code = "invalid_amount"

    def __init__(self, amount: int, maximum: int) -> None:
        super().__init__(f"amount {amount} must be > 0 and <= {maximum}")
        self.amount = amount
        self.maximum = maximum


class InvalidPhoneNumber(ValidationFailed):
    code = "invalid_phone"


class WeakPin(ValidationFailed):
    code = "weak_pin"

    def __init__(self, reason: str) -> None:
        super().__init__(f"weak PIN: {reason}")
        self.reason = reason  # not_six_digits | repeated | sequence | birth_date | same_as_old


class NotFound(WalletError):
    code = "not_found"


class CustomerNotFound(NotFound):
    code = "customer_not_found"


class MovementNotFound(NotFound):
    code = "movement_not_found"


class AlreadyRegistered(WalletError):
    code = "already_registered"

    def __init__(self, field: str) -> None:
        super().__init__(f"{field} already belongs to a customer")
        self.field = field  # phone | email | nik


class LimitError(WalletError):
    """A rule about how much money may move was hit."""


class InsufficientFunds(LimitError):
    code = "insufficient_funds"

    def __init__(self, available: int, needed: int) -> None:
        super().__init__(f"available {available} < needed {needed}")
        self.available = available
        self.needed = needed


class BalanceCapExceeded(LimitError):
    code = "balance_cap_exceeded"

    def __init__(self, cap: int, room: int, amount: int) -> None:
        super().__init__(f"balance cap {cap}: room {room} < amount {amount}")
        self.cap = cap
        self.room = room
        self.amount = amount


class MonthlyLimitExceeded(LimitError):
    code = "monthly_limit_exceeded"

    def __init__(self, cap: int, used: int, amount: int) -> None:
        super().__init__(f"monthly cap {cap}: used {used} + {amount} too much")
        self.cap = cap
        self.used = used
        self.room = max(cap - used, 0)
        self.amount = amount


class TierNotAllowed(LimitError):
    code = "tier_not_allowed"

    def __init__(self, tier: str, operation: str) -> None:
        super().__init__(f"{tier} customers cannot {operation}")
        self.tier = tier
        self.operation = operation


class AccountNotActive(WalletError):
    code = "account_not_active"

    def __init__(self, status: str) -> None:
        super().__init__(f"account is {status}")
        self.status = status


class IdempotencyConflict(WalletError):
    code = "idempotency_conflict"

    def __init__(self, key: str) -> None:
        super().__init__("idempotency key reused with a different request")
        self.key = key


class InvalidTransition(WalletError):
    """A hold asked to post/void after it was already settled the other way."""

    code = "invalid_transition"

    def __init__(self, state: str, wanted: str) -> None:
        super().__init__(f"movement is {state}, cannot {wanted}")
        self.state = state
        self.wanted = wanted


class HoldExpired(InvalidTransition):
    code = "hold_expired"

    def __init__(self) -> None:
        super().__init__("voided", "post (hold expired)")


class SecurityError(WalletError):
    pass


class InvalidPin(SecurityError):
    code = "invalid_pin"

    def __init__(self, attempts_left: int) -> None:
        super().__init__(f"wrong PIN, {attempts_left} attempts left")
        self.attempts_left = attempts_left


class PinLocked(SecurityError):
    code = "pin_locked"


class PinNotSet(SecurityError):
    code = "pin_not_set"


class OtpError(SecurityError):
    pass


class OtpInvalid(OtpError):
    code = "otp_invalid"

    def __init__(self, attempts_left: int) -> None:
        super().__init__(f"wrong OTP, {attempts_left} attempts left")
        self.attempts_left = attempts_left


class OtpExpired(OtpError):
    code = "otp_expired"


class OtpNotRequested(OtpError):
    code = "otp_not_requested"


class OtpBlocked(OtpError):
    code = "otp_blocked"

    def __init__(self, until: datetime) -> None:
        super().__init__(f"blocked until {until.isoformat()}")
        self.until = until


class OtpRateLimited(OtpError):
    code = "otp_rate_limited"

    def __init__(self, retry_at: datetime) -> None:
        super().__init__(f"daily OTP requests used up; retry at {retry_at.isoformat()}")
        self.retry_at = retry_at


class TokenError(WalletError):
    pass


class TokenInvalid(TokenError):
    code = "token_invalid"


class TokenExpired(TokenError):
    code = "token_expired"


class TokenAlreadyRedeemed(TokenError):
    code = "token_redeemed"


class TokenAmountMismatch(TokenError):
    code = "token_amount_mismatch"

    def __init__(self, expected: int, given: int) -> None:
        super().__init__(f"token is for {expected}, not {given}")
        self.expected = expected
        self.given = given
