"""The tables of the Demo ERP's SQLite file (created on first use, ``IF NOT EXISTS``)."""

from __future__ import annotations

SCHEMA_VERSION = "1"

_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    """CREATE TABLE IF NOT EXISTS connections (
        guid TEXT PRIMARY KEY,
        config TEXT NOT NULL,
        saved_at TEXT NOT NULL
    )""",
    """CREATE TABLE IF NOT EXISTS actors (
        erp_key TEXT PRIMARY KEY,
        actor_type TEXT NOT NULL,
        parent_type TEXT,
        parent_key TEXT,
        display_name TEXT NOT NULL DEFAULT '',
        search_text TEXT NOT NULL DEFAULT '',
        fields TEXT NOT NULL DEFAULT '{}',
        last_modified INTEGER NOT NULL,
        deleted INTEGER NOT NULL DEFAULT 0
    )""",
    # The change feed (GetActorsByTimestamp) and paging walk this index.
    "CREATE INDEX IF NOT EXISTS ix_actors_changes ON actors (actor_type, last_modified, erp_key) "
    "WHERE deleted = 0",
    "CREATE INDEX IF NOT EXISTS ix_actors_parent ON actors (parent_key) WHERE deleted = 0",
    "CREATE INDEX IF NOT EXISTS ix_actors_name ON actors (actor_type, display_name COLLATE NOCASE, erp_key) "
    "WHERE deleted = 0",
    """CREATE TABLE IF NOT EXISTS lists (
        list_name TEXT NOT NULL,
        item_key TEXT NOT NULL,
        item_text TEXT NOT NULL,
        rank INTEGER NOT NULL,
        PRIMARY KEY (list_name, item_key)
    )""",
    """CREATE TABLE IF NOT EXISTS idempotency_keys (
        idem_key TEXT PRIMARY KEY,
        actor_type TEXT NOT NULL,
        erp_key TEXT NOT NULL,
        connection_guid TEXT,
        created_at TEXT NOT NULL
    )""",
)
