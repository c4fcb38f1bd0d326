"""The tables. SQLAlchemy Core on purpose: the money path issues a handful of statements
per movement, and Core keeps them cheap and explicit.

Money columns are BigInteger rupiah. Times are stored in UTC.
"""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    CheckConstraint,
    Column,
    Date,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    UniqueConstraint,
)

# INTEGER PRIMARY KEY is SQLite's rowid alias (autoincrement); BIGINT elsewhere.
Id = BigInteger().with_variant(Integer(), "sqlite")
Ts = DateTime(timezone=True)

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(column_0_label)s",
        "uq": "uq_%(table_name)s_%(column_0_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

customers = Table(
    "customers",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("phone", String(20), nullable=False, unique=True),
    Column("first_name", String(100), nullable=False),
    Column("last_name", String(100), nullable=False, server_default=""),
    Column("birth_date", Date, nullable=True),
    Column("email", String(254), nullable=True),
    # lower-cased email: one customer per address, case-insensitively
    Column("email_normalized", String(254), nullable=True, unique=True),
    Column("nik", String(16), nullable=True, unique=True),
    Column("language", String(2), nullable=False, server_default="id"),
    Column("tier", String(10), nullable=False, server_default="regular"),
    Column("status", String(12), nullable=False, server_default="active"),
    Column("pin_hash", String(200), nullable=True),
    Column("failed_pin_attempts", Integer, nullable=False, server_default="0"),
    Column("created_at", Ts, nullable=False),
    Column("updated_at", Ts, nullable=False),
    CheckConstraint("tier IN ('regular', 'premium')", name="tier"),
    CheckConstraint(
        "status IN ('active', 'locked', 'blocked', 'deactivated', 'closed')", name="status"
    ),
)

accounts = Table(
    "accounts",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    # wallet:<customer id>, or <system group>#<shard> for system accounts
    Column("code", String(80), nullable=False, unique=True),
    Column("group_code", String(80), nullable=False, index=True),
    Column("shard", Integer, nullable=False, server_default="0"),
    Column("kind", String(30), nullable=False),
    Column("customer_id", Id, ForeignKey("customers.id"), nullable=True, unique=True),
    # posted balance (credits - debits) and the holds against it
    Column("balance", BigInteger, nullable=False, server_default="0"),
    Column("debits_pending", BigInteger, nullable=False, server_default="0"),
    Column("credits_pending", BigInteger, nullable=False, server_default="0"),
    # month-to-date transaction volume (WIB month YYYYMM), pending + posted
    Column("usage_month", Integer, nullable=False, server_default="0"),
    Column("usage_amount", BigInteger, nullable=False, server_default="0"),
    Column("created_at", Ts, nullable=False),
    CheckConstraint("debits_pending >= 0 AND credits_pending >= 0", name="pending_nonneg"),
    CheckConstraint(
        "customer_id IS NULL OR balance - debits_pending >= 0", name="customer_available_nonneg"
    ),
)

movements = Table(
    "movements",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("ref", String(20), nullable=False, unique=True),
    Column("idempotency_key", String(200), nullable=False, unique=True),
    Column("request_hash", String(64), nullable=False),
    Column("kind", String(30), nullable=False),
    Column("state", String(10), nullable=False),
    Column("amount", BigInteger, nullable=False),
    Column("fee", BigInteger, nullable=False, server_default="0"),
    Column("debit_customer_id", Id, ForeignKey("customers.id"), nullable=True, index=True),
    Column("credit_customer_id", Id, ForeignKey("customers.id"), nullable=True, index=True),
    Column("usage_month", Integer, nullable=False),
    Column("expires_at", Ts, nullable=True),
    Column("created_at", Ts, nullable=False),
    Column("settled_at", Ts, nullable=True),
    Column("actor", String(120), nullable=False),
    Column("settled_by", String(120), nullable=True),
    Column("description", String(200), nullable=False, server_default=""),
    Column("meta", JSON, nullable=True),
    CheckConstraint("amount > 0 AND fee >= 0", name="amounts"),
    CheckConstraint("state IN ('pending', 'posted', 'voided')", name="state"),
)
Index("ix_movements_pending_expiry", movements.c.state, movements.c.expires_at)

entries = Table(
    "entries",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("movement_id", Id, ForeignKey("movements.id"), nullable=False, index=True),
    Column("account_id", Id, ForeignKey("accounts.id"), nullable=False, index=True),
    # signed: credit > 0, debit < 0; a movement's entries sum to zero
    Column("amount", BigInteger, nullable=False),
    CheckConstraint("amount <> 0", name="nonzero"),
)

audit_log = Table(
    "audit_log",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("at", Ts, nullable=False),
    Column("actor", String(120), nullable=False),
    Column("action", String(60), nullable=False),
    Column("customer_id", Id, ForeignKey("customers.id"), nullable=True, index=True),
    Column("movement_id", Id, ForeignKey("movements.id"), nullable=True),
    Column("details", JSON, nullable=True),
)

otp_challenges = Table(
    "otp_challenges",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("phone", String(20), nullable=False),
    Column("purpose", String(30), nullable=False),
    Column("code_hash", String(64), nullable=False),
    Column("state", String(12), nullable=False),  # active | used | failed | superseded
    Column("attempts", Integer, nullable=False, server_default="0"),
    Column("created_at", Ts, nullable=False),
    Column("expires_at", Ts, nullable=False),
)
Index("ix_otp_challenges_phone_created", otp_challenges.c.phone, otp_challenges.c.created_at)

otp_blocks = Table(
    "otp_blocks",
    metadata,
    Column("phone", String(20), primary_key=True),
    Column("until", Ts, nullable=False),
    Column("reason", String(60), nullable=False),
)

__all__ = [
    "accounts",
    "audit_log",
    "conversations",
    "customers",
    "entries",
    "inbox",
    "media",
    "metadata",
    "movements",
    "otp_blocks",
    "otp_challenges",
    "outbox",
    "processed_messages",
    "support_requests",
    "tokens",
]

# ---------------------------------------------------------------- conversations
conversations = Table(
    "conversations",
    metadata,
    Column("channel", String(20), primary_key=True),
    Column("chat_id", String(64), primary_key=True),
    Column("customer_id", Id, ForeignKey("customers.id"), nullable=True, index=True),
    Column("language", String(2), nullable=False, server_default="id"),
    # the active flow's state as JSON (never a PIN, OTP or password in clear)
    Column("state", JSON, nullable=True),
    Column("state_at", Ts, nullable=True),  # when the flow last waited on the customer
    # the buttons last offered, so "2" or a label typed back maps to the choice
    Column("buttons", JSON, nullable=True),
    Column("updated_at", Ts, nullable=False),
    # last message from the customer: WhatsApp's 24-hour session window
    Column("last_inbound_at", Ts, nullable=True),
)

# Inbound deliveries already handled (Telegram update_id, Twilio MessageSid, console line).
processed_messages = Table(
    "processed_messages",
    metadata,
    Column("channel", String(20), primary_key=True),
    Column("message_id", String(80), primary_key=True),
    Column("at", Ts, nullable=False),
)

# Accepted inbound messages, persisted before the webhook answers 200 and processed in
# arrival order per chat by whichever worker holds the chat's lock; deleted in the same
# transaction that applies them.
inbox = Table(
    "inbox",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("channel", String(20), nullable=False),
    Column("chat_id", String(64), nullable=False),
    Column("message_id", String(80), nullable=False),
    Column("payload", JSON, nullable=False),
    Column("received_at", Ts, nullable=False),
    UniqueConstraint("channel", "message_id", name="uq_inbox_channel_message"),
)
Index("ix_inbox_chat", inbox.c.channel, inbox.c.chat_id, inbox.c.id)

# Images customers send (KYC, QR codes) and the bot sends (receipts).
media = Table(
    "media",
    metadata,
    Column("id", String(32), primary_key=True),  # random, unguessable
    Column("content_type", String(60), nullable=False),
    Column("size", Integer, nullable=False),
    Column("sha256", String(64), nullable=False),
    Column("data", LargeBinary, nullable=False),
    Column("channel", String(20), nullable=False),
    Column("chat_id", String(64), nullable=False),
    Column("created_at", Ts, nullable=False),
)

# Replies written in the same transaction as the state, delivered after commit.
outbox = Table(
    "outbox",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("channel", String(20), nullable=False),
    Column("chat_id", String(64), nullable=False),
    Column("payload", JSON, nullable=False),
    Column("created_at", Ts, nullable=False),
    Column("attempts", Integer, nullable=False, server_default="0"),
    Column("next_attempt_at", Ts, nullable=False),
    Column("sent_at", Ts, nullable=True),
    Column("failed_at", Ts, nullable=True),
    Column("error", String(300), nullable=True),
)
Index("ix_outbox_due", outbox.c.sent_at, outbox.c.failed_at, outbox.c.next_attempt_at)
Index("ix_outbox_chat", outbox.c.channel, outbox.c.chat_id, outbox.c.id)

# Requests a person must act on: lost phone, un-register, talk to a person.
support_requests = Table(
    "support_requests",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("kind", String(30), nullable=False),  # lost_phone | unregister | agent
    Column("customer_id", Id, ForeignKey("customers.id"), nullable=True, index=True),
    Column("channel", String(20), nullable=False),
    Column("chat_id", String(64), nullable=False),
    Column("status", String(12), nullable=False, server_default="open"),
    Column("note", String(500), nullable=False, server_default=""),
    Column("created_at", Ts, nullable=False),
    Column("closed_at", Ts, nullable=True),
)

# ---------------------------------------------------------------- money tokens
# 6-digit single-use tokens: minimart top-ups (amount fixed) and cash-outs (funds held).
tokens = Table(
    "tokens",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("purpose", String(10), nullable=False),  # topup | cashout
    # HMAC of the code (keyed with the server secret): looked up, never stored in clear
    Column("code_hash", String(64), nullable=False),
    Column("customer_id", Id, ForeignKey("customers.id"), nullable=False, index=True),
    Column("amount", BigInteger, nullable=False),
    Column("movement_id", Id, ForeignKey("movements.id"), nullable=True),  # cash-out hold
    Column("state", String(10), nullable=False),  # active | redeemed | expired
    Column("expires_at", Ts, nullable=False),
    Column("created_at", Ts, nullable=False),
    Column("redeemed_at", Ts, nullable=True),
    Column("partner", String(40), nullable=True),
    Column("partner_ref", String(80), nullable=True),
    Column("idempotency_key", String(200), nullable=False, unique=True),
)
Index("ix_tokens_active", tokens.c.code_hash, tokens.c.state)
