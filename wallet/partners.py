"""Signatures on partner and provider callbacks (banks, minimarts, billers).

``X-Kaspro-Timestamp: <unix seconds>`` and ``X-Kaspro-Signature: <hex>`` where the
signature is HMAC-SHA256(secret, "<timestamp>.<raw body>"). A timestamp outside the
window is refused, so a captured request cannot be replayed later; within the window a
replay is harmless because every callback is idempotent on the partner's reference.
"""

from __future__ import annotations

import hashlib
import hmac


def sign(secret: bytes, timestamp: int, body: bytes) -> str:
    return hmac.new(secret, str(timestamp).encode() + b"." + body, hashlib.sha256).hexdigest()


def verify(
    secret: bytes, timestamp: str, body: bytes, signature: str, now: float, window: int
) -> bool:
    """Constant-time check of a signed callback."""
    if not timestamp.isdigit() or not signature:
        return False
    if abs(now - int(timestamp)) > window:
        return False
    return hmac.compare_digest(signature.lower(), sign(secret, int(timestamp), body))
