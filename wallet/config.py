"""Settings: config.yaml for defaults, the environment for overrides and secrets.

Read once at start-up (``load_settings``) and passed in; nothing reads it at import time.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, Field, SecretStr
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from wallet.billers import DEFAULT_PRODUCTS, Product

DEFAULT_CONFIG_PATH = Path(__file__).resolve().parent.parent / "config.yaml"


class DbSettings(BaseModel):
    pool_size: int = 20
    sqlite_busy_timeout_ms: int = 10_000
    retry_attempts: int = 5


class LimitSettings(BaseModel):
    regular_balance_cap: int = 2_000_000
    regular_monthly_cap: int = 20_000_000
    premium_balance_cap: int = 20_000_000
    premium_monthly_cap: int = 40_000_000
    max_transaction_amount: int = 20_000_000


class LedgerSettings(BaseModel):
    hold_expiry_minutes: int = 60
    system_account_shards: int = Field(default=16, ge=1, le=256)


class SecuritySettings(BaseModel):
    max_pin_attempts: int = 3
    pin_hash_time_cost: int = 2
    pin_hash_memory_kib: int = 19_456
    pin_hash_parallelism: int = 1
    otp_ttl_minutes: int = 5
    otp_max_requests_per_day: int = 3
    otp_max_attempts: int = 3
    otp_block_hours: int = 24


class ServerSettings(BaseModel):
    host: str = "127.0.0.1"
    port: int = 8080
    # Largest photo/document a customer may send (bytes).
    media_max_bytes: int = 5_000_000
    # How long a signed /media/… link for an image the bot sent stays valid.
    media_link_ttl_minutes: int = 60
    # Seconds between background passes (idle flows, due deliveries).
    background_interval_seconds: float = 5.0


class TelegramSettings(BaseModel):
    # Telegram's documented limits: about 30 messages/s overall, 1/s per chat
    # (short bursts tolerated).
    messages_per_second: float = 30.0
    per_chat_per_second: float = 1.0
    per_chat_burst: int = 3


class TwilioSettings(BaseModel):
    # Messages/s the Twilio sender may send (the account's configured throughput).
    messages_per_second: float = 10.0
    # Approved WhatsApp templates (ContentSid) for messages outside the 24-hour session
    # window; empty: such messages wait until the customer writes again.
    notification_content_sid: str = ""
    otp_content_sid: str = ""
    # Where OTPs go, in order of preference.
    otp_channels: list[str] = ["whatsapp", "sms"]


class BankSettings(BaseModel):
    code: str  # e.g. "014"
    name: str  # e.g. "BCA"
    va_prefix: str  # virtual account number = prefix + the phone's national digits


class MoneySettings(BaseModel):
    banks: list[BankSettings] = [
        BankSettings(code="002", name="BRI", va_prefix="88810"),
        BankSettings(code="008", name="Mandiri", va_prefix="89508"),
        BankSettings(code="009", name="BNI", va_prefix="8808"),
        BankSettings(code="014", name="BCA", va_prefix="39358"),
        BankSettings(code="451", name="BSI", va_prefix="9347"),
    ]
    minimarts: list[str] = ["indomaret", "alfamart"]
    topup_token_minutes: int = 60
    topup_token_min: int = 10_000
    cashout_token_minutes: int = 60
    cashout_denominations: list[int] = [100_000, 200_000, 300_000, 500_000, 1_000_000]
    cashout_fee: int = 0
    transfer_fee: int = 0
    bank_transfer_fee: int = 6_500
    # Transfers to banks: "sandbox" (deterministic) or "http" (KASPRO_DISBURSEMENT_URL and
    # KASPRO_DISBURSEMENT_API_KEY from the environment).
    disbursement_provider: str = "sandbox"
    # Partner callbacks: HMAC-SHA256 over "<timestamp>.<body>", accepted this long.
    partner_window_seconds: int = 300


class BillsSettings(BaseModel):
    # Which biller: "sandbox" (deterministic, the default) or "digiflazz" (HTTP aggregator;
    # KASPRO_BILLER_USERNAME / KASPRO_BILLER_API_KEY / KASPRO_BILLER_URL from the env).
    provider: str = "sandbox"
    # A pending payment older than this is settled by asking the biller (reconciliation).
    reconcile_after_seconds: int = 60
    products: list[Product] = [Product.model_validate(p) for p in DEFAULT_PRODUCTS]


class Settings(BaseSettings):
    """Every setting of the service. Secrets are environment-only (never in YAML)."""

    model_config = SettingsConfigDict(
        env_prefix="KASPRO_", env_nested_delimiter="__", extra="ignore"
    )

    database_url: str = "sqlite+aiosqlite:///./kaspro.db"
    timezone: str = "Asia/Jakarta"
    log_format: str = "json"
    log_level: str = "INFO"
    # Minutes a flow waits on the customer before it is cancelled (a late "yes" or PIN
    # then moves no money).
    idle_timeout_minutes: int = 5
    server: ServerSettings = ServerSettings()
    telegram: TelegramSettings = TelegramSettings()
    twilio: TwilioSettings = TwilioSettings()
    money: MoneySettings = MoneySettings()
    bills: BillsSettings = BillsSettings()
    db: DbSettings = DbSettings()
    limits: LimitSettings = LimitSettings()
    ledger: LedgerSettings = LedgerSettings()
    security: SecuritySettings = SecuritySettings()

    # Environment only (secrets, and what differs per deployment).
    secret_key: SecretStr | None = None
    public_url: str = "http://127.0.0.1:8080"
    telegram_token: SecretStr | None = None
    telegram_webhook_secret: SecretStr | None = None
    telegram_api_url: str = "https://api.telegram.org"
    twilio_account_sid: str | None = None
    twilio_auth_token: SecretStr | None = None
    twilio_whatsapp_from: str | None = None
    twilio_sms_from: str | None = None
    twilio_api_url: str = "https://api.twilio.com"
    partner_secret: SecretStr | None = None
    biller_url: str = "https://api.digiflazz.com"
    biller_username: str | None = None
    biller_api_key: SecretStr | None = None
    biller_webhook_secret: SecretStr | None = None
    disbursement_url: str = ""
    disbursement_api_key: SecretStr | None = None
    smtp_url: SecretStr | None = None

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, env_settings, _YamlSource(settings_cls))


# Read only from the environment: refused in the YAML file.
SECRET_FIELDS = frozenset(
    {
        "secret_key",
        "public_url",
        "telegram_token",
        "telegram_webhook_secret",
        "telegram_api_url",
        "twilio_account_sid",
        "twilio_auth_token",
        "twilio_whatsapp_from",
        "twilio_sms_from",
        "twilio_api_url",
        "partner_secret",
        "biller_url",
        "biller_username",
        "biller_api_key",
        "biller_webhook_secret",
        "disbursement_url",
        "disbursement_api_key",
        "smtp_url",
    }
)


class _YamlSource(PydanticBaseSettingsSource):
    """Reads the YAML named by KASPRO_CONFIG (default: the repository's config.yaml)."""

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        path = Path(os.environ.get("KASPRO_CONFIG", str(DEFAULT_CONFIG_PATH)))
        if not path.exists():
            return {}
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        if not isinstance(data, dict):
            raise ValueError(f"{path}: expected a mapping at the top level")
        leaked = SECRET_FIELDS & data.keys()
        if leaked:
            raise ValueError(f"{path}: secrets belong in the environment, not in YAML: {leaked}")
        return data


def load_settings(**overrides: Any) -> Settings:
    """Load settings once, at start-up. Keyword overrides win over everything (tests)."""
    return Settings(**overrides)
