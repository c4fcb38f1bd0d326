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
    db: DbSettings = DbSettings()
    limits: LimitSettings = LimitSettings()
    ledger: LedgerSettings = LedgerSettings()
    security: SecuritySettings = SecuritySettings()

    # Secrets: environment only.
    secret_key: SecretStr | None = None

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


SECRET_FIELDS = frozenset({"secret_key"})


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
