"""``ConnectionStore``: what the connector keeps between restarts, in its own SQLite file (the saved connection
configs by GUID, passwords encrypted, and IdempotencyKey → ErpKey)."""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import sqlite3
from collections.abc import Mapping
from pathlib import Path

from portal.connectors.builtin.tryton.config import CFG_PASSWORD

log = logging.getLogger(__name__)


class ConnectionStore:
    """Connection configs by GUID and IdempotencyKey → ErpKey, in a SQLite file (thread- and process-safe).

    The password is encrypted with the portal's Fernet keys when they are given (ENCRYPTION_KEYS); the file
    is created owner-only (0600) either way. A config whose password no longer decrypts counts as unknown, so
    the portal re-sends it (UNKNOWN_CONNECTION_ID)."""

    def __init__(self, path: str | os.PathLike, secret_keys: list[str] | None = None):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if not self.path.exists():
            os.close(os.open(self.path, os.O_WRONLY | os.O_CREAT, 0o600))
        self._fernet = None
        if secret_keys:
            from cryptography.fernet import Fernet, MultiFernet

            self._fernet = MultiFernet([Fernet(key.encode() if isinstance(key, str) else key)
                                        for key in secret_keys])
        with self._db() as conn:
            conn.execute("CREATE TABLE IF NOT EXISTS connection (guid TEXT PRIMARY KEY, config TEXT NOT NULL, "
                         "saved_at TEXT NOT NULL)")
            conn.execute("CREATE TABLE IF NOT EXISTS idempotency (guid TEXT NOT NULL, key TEXT NOT NULL, "
                         "actor_type TEXT NOT NULL, erp_key TEXT NOT NULL, created_at TEXT NOT NULL, "
                         "PRIMARY KEY (guid, key))")

    def _db(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, timeout=15)
        conn.execute("PRAGMA busy_timeout = 15000")
        return conn

    def _run(self, sql: str, params: tuple = (), fetch: bool = False):
        conn = self._db()
        try:
            with conn:
                cursor = conn.execute(sql, params)
                return cursor.fetchall() if fetch else cursor.rowcount
        finally:
            conn.close()

    def save(self, guid: str, info: Mapping) -> None:
        stored = {str(k): ("" if v is None else v) for k, v in info.items()}
        password = stored.get(CFG_PASSWORD)
        if self._fernet is not None and password:
            stored[CFG_PASSWORD] = "fernet:" + self._fernet.encrypt(str(password).encode()).decode()
        self._run("INSERT INTO connection (guid, config, saved_at) VALUES (?, ?, ?) ON CONFLICT(guid) DO UPDATE "
                  "SET config = excluded.config, saved_at = excluded.saved_at",
                  (guid, json.dumps(stored), dt.datetime.now(dt.UTC).isoformat()))

    def load(self, guid: str) -> dict | None:
        rows = self._run("SELECT config FROM connection WHERE guid = ?", (guid,), fetch=True)
        if not rows:
            return None
        info = json.loads(rows[0][0])
        password = info.get(CFG_PASSWORD)
        if isinstance(password, str) and password.startswith("fernet:"):
            if self._fernet is None:
                return None
            from cryptography.fernet import InvalidToken

            try:
                info[CFG_PASSWORD] = self._fernet.decrypt(password[len("fernet:"):].encode()).decode()
            except InvalidToken:
                log.warning("tryton connector: stored password of %s no longer decrypts", guid)
                return None
        return info

    def delete(self, guid: str) -> None:
        self._run("DELETE FROM connection WHERE guid = ?", (guid,))
        self._run("DELETE FROM idempotency WHERE guid = ?", (guid,))

    def recall(self, guid: str, key: str) -> tuple[str, str] | None:
        rows = self._run("SELECT actor_type, erp_key FROM idempotency WHERE guid = ? AND key = ?", (guid, key),
                         fetch=True)
        return (rows[0][0], rows[0][1]) if rows else None

    def remember(self, guid: str, key: str, actor_type: str, erp_key: str) -> None:
        self._run("INSERT OR IGNORE INTO idempotency (guid, key, actor_type, erp_key, created_at) "
                  "VALUES (?, ?, ?, ?, ?)", (guid, key, actor_type, erp_key,
                                             dt.datetime.now(dt.UTC).isoformat()))
