"""Rate-limit counters in the portal's own database: the ``database://`` storage of :mod:`limits`.

With several processes (``gunicorn -w N``) or several hosts on one PostgreSQL, counters kept in memory would let
each process allow the full rate. This storage keeps them in the table ``rate_limit_counter`` — one row per key:
its count and when its window ends — so every process counts against the same numbers without a Redis to run.

* ``incr`` is one atomic upsert (``INSERT … ON CONFLICT (key) DO UPDATE … RETURNING count``, PostgreSQL and SQLite
  ≥ 3.35): a window that has ended starts again at ``amount`` with a new expiry, otherwise the count grows. Fifty
  processes hitting one key at once end with exactly fifty.
* It runs on a connection of its own and commits at once, never in the request's session: a rate-limit check
  neither commits nor rolls back the view's work.
* Expired rows are deleted by the scheduler leader (:func:`prune`, every 10 minutes).

Only the fixed-window strategy is offered (the one ``portal/security/limits.py`` uses). The storage URI is just
``database://`` — the database is the app's ``SQLALCHEMY_DATABASE_URI``; :func:`bind` attaches the app when
Flask-Limiter has built the storage (``limits.PortalLimiter.init_app``).
"""

from __future__ import annotations

import time

from limits.storage import Storage
from sqlalchemy import Float, Integer, String, case, delete, func, select
from sqlalchemy.exc import SQLAlchemyError

from portal.extensions import db

SCHEME = "database"
KEY_LENGTH = 400


class RateLimitCounter(db.Model):
    """A fixed-window counter: ``count`` hits until ``expires_at`` (Unix seconds)."""

    __tablename__ = "rate_limit_counter"

    key = db.Column(String(KEY_LENGTH), primary_key=True)
    count = db.Column(Integer, nullable=False, default=0)
    expires_at = db.Column(Float, nullable=False, index=True)


def _insert(dialect: str):
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    elif dialect == "sqlite":
        from sqlalchemy.dialects.sqlite import insert
    else:  # pragma: no cover - the portal runs on these two
        raise RuntimeError(f"database:// rate limits need PostgreSQL or SQLite, not {dialect}")
    return insert


class DatabaseStorage(Storage):
    """``database://``: counters in the ``rate_limit_counter`` table of the app's database."""

    STORAGE_SCHEME = [SCHEME]

    def __init__(self, uri: str | None = None, wrap_exceptions: bool = False, **options) -> None:
        super().__init__(uri, wrap_exceptions=wrap_exceptions, **options)
        self._app = None
        self._engine = None

    # -- wiring -------------------------------------------------------------------------------------------------

    def bind(self, app) -> None:
        self._app = app
        self._engine = None

    @property
    def engine(self):
        if self._engine is None:
            from flask import current_app, has_app_context

            app = self._app or (current_app._get_current_object() if has_app_context() else None)
            if app is None:
                raise RuntimeError("the database:// rate-limit storage is not bound to an app")
            with app.app_context():
                self._engine = db.engine
        return self._engine

    @property
    def base_exceptions(self):
        return SQLAlchemyError

    @staticmethod
    def _key(key: str) -> str:
        return key[:KEY_LENGTH]

    # -- the Storage interface ------------------------------------------------------------------------------------

    def incr(self, key: str, expiry: int, amount: int = 1) -> int:
        now = time.time()
        table = RateLimitCounter.__table__
        engine = self.engine
        insert = _insert(engine.dialect.name)
        stmt = insert(table).values(key=self._key(key), count=amount, expires_at=now + expiry)
        ended = table.c.expires_at <= now
        stmt = stmt.on_conflict_do_update(
            index_elements=[table.c.key],
            set_={"count": case((ended, amount), else_=table.c.count + amount),
                  "expires_at": case((ended, now + expiry), else_=table.c.expires_at)},
        ).returning(table.c.count)
        with engine.begin() as connection:
            return int(connection.execute(stmt).scalar_one())

    def get(self, key: str) -> int:
        table = RateLimitCounter.__table__
        with self.engine.connect() as connection:
            value = connection.execute(select(table.c.count).where(
                table.c.key == self._key(key), table.c.expires_at > time.time())).scalar()
        return int(value or 0)

    def get_expiry(self, key: str) -> float:
        table = RateLimitCounter.__table__
        now = time.time()
        with self.engine.connect() as connection:
            value = connection.execute(select(table.c.expires_at).where(
                table.c.key == self._key(key), table.c.expires_at > now)).scalar()
        return float(value) if value is not None else now

    def check(self) -> bool:
        try:
            with self.engine.connect() as connection:
                connection.execute(select(1))
            return True
        except Exception:
            return False

    def reset(self) -> int | None:
        with self.engine.begin() as connection:
            return connection.execute(delete(RateLimitCounter.__table__)).rowcount

    def clear(self, key: str) -> None:
        table = RateLimitCounter.__table__
        with self.engine.begin() as connection:
            connection.execute(delete(table).where(table.c.key == self._key(key)))


def prune(now: float | None = None) -> int:
    """Delete the counters whose window has ended (the scheduler leader's job; in an app context)."""
    table = RateLimitCounter.__table__
    cutoff = time.time() if now is None else now
    with db.engine.begin() as connection:
        return connection.execute(delete(table).where(table.c.expires_at <= cutoff)).rowcount or 0


def live_counters() -> int:
    """How many counters are in their window (for tests and diagnostics)."""
    table = RateLimitCounter.__table__
    with db.engine.connect() as connection:
        return int(connection.execute(select(func.count()).select_from(table)
                                      .where(table.c.expires_at > time.time())).scalar_one())


__all__ = ["SCHEME", "DatabaseStorage", "RateLimitCounter", "live_counters", "prune"]
