"""Images: stored in the database, served by signed, expiring links."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection, select

from storage.db import Database
from storage.schema import media

IMAGE_TYPES = {"image/jpeg", "image/png", "image/webp", "image/gif"}


@dataclass(frozen=True, slots=True)
class StoredMedia:
    id: str
    content_type: str
    data: bytes


def sniff_image_type(data: bytes) -> str:
    """The image type from the file's first bytes (what the sender claims is not trusted)."""
    if data[:3] == b"\xff\xd8\xff":
        return "image/jpeg"
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        return "image/png"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return "image/gif"
    return "application/octet-stream"


class MediaStore:
    def __init__(self, db: Database, key: bytes) -> None:
        self.db = db
        self._key = key

    async def put(
        self, data: bytes, content_type: str, *, channel: str, chat_id: str, now: datetime
    ) -> str:
        media_id = secrets.token_hex(16)
        await self.db.write(_insert, media_id, data, content_type, channel, chat_id, now)
        return media_id

    async def get(self, media_id: str) -> StoredMedia | None:
        return await self.db.read(_load, media_id)

    # ------------------------------------------------------------ signed links
    def sign(self, media_id: str, ttl_seconds: int, now: float | None = None) -> str:
        """``/media/<id>?exp=<unix>&sig=<hmac>`` — valid until ``exp``."""
        exp = int((now if now is not None else time.time()) + ttl_seconds)
        return f"/media/{media_id}?exp={exp}&sig={self._sig(media_id, exp)}"

    def verify(self, media_id: str, exp: str, sig: str, now: float | None = None) -> bool:
        if not exp.isdigit() or int(exp) < (now if now is not None else time.time()):
            return False
        return hmac.compare_digest(sig, self._sig(media_id, int(exp)))

    def _sig(self, media_id: str, exp: int) -> str:
        msg = f"media|{media_id}|{exp}".encode()
        return hmac.new(self._key, msg, hashlib.sha256).hexdigest()


def _insert(
    conn: Connection,
    media_id: str,
    data: bytes,
    content_type: str,
    channel: str,
    chat_id: str,
    now: datetime,
) -> None:
    conn.execute(
        media.insert().values(
            id=media_id,
            content_type=content_type,
            size=len(data),
            sha256=hashlib.sha256(data).hexdigest(),
            data=data,
            channel=channel,
            chat_id=chat_id,
            created_at=now,
        )
    )


def _load(conn: Connection, media_id: str) -> StoredMedia | None:
    row = conn.execute(
        select(media.c.id, media.c.content_type, media.c.data).where(media.c.id == media_id)
    ).first()
    return None if row is None else StoredMedia(row.id, row.content_type, bytes(row.data))
