"""Configuration from ``PORTAL_*`` environment variables.

Every setting the portal reads is listed in ``SETTINGS`` so the README table and the code never drift
apart (``tests/unit/test_config.py`` checks the README mentions each one).
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from portal import jsoncodec


class ConfigError(RuntimeError):
    """A setting has a value the portal cannot use."""


# name -> (default, description). Defaults are applied in load_config().
SETTINGS: dict[str, tuple[str | None, str]] = {
    "PORTAL_DATABASE_URL": (None, "SQLAlchemy URL of the database; default SQLite file instance/portal.db"),
    "PORTAL_SECRET_KEY": (None, "Flask session signing key; generated once into instance/secret_key if unset"),
    "PORTAL_ENCRYPTION_KEYS": (
        None,
        "comma-separated Fernet keys for connector secrets, newest first; generated once into "
        "instance/encryption_keys if unset",
    ),
    "PORTAL_ADMIN_EMAIL": ("admin@example.com", "e-mail (login) of the first admin created on an empty database"),
    "PORTAL_ADMIN_PASSWORD": (None, "password of the first admin; generated and printed once if unset"),
    "PORTAL_DEMO_DATA": ("on", "on/off: seed demo CRM records and register the Demo ERP connector on first run"),
    "PORTAL_SCHEDULER": ("on", "on/off: run the sync scheduler in this process (only wsgi.py starts it)"),
    "PORTAL_SCHEDULER_LEADER_RETRY": (
        "5",
        "seconds between a non-leader's attempts to become the scheduler leader (and the leader's check of its "
        "lock); a dead leader is replaced within this, at most one sync interval",
    ),
    "PORTAL_CONNECTOR_ALLOWED_NETWORKS": (
        "",
        "comma-separated CIDR networks connector URLs may resolve to; empty = any address except "
        "link-local and cloud-metadata ones",
    ),
    "PORTAL_CONNECTOR_TIMEOUT": ("30", "seconds to wait for a connector answer (connect timeout is 5 s)"),
    "PORTAL_CONNECTOR_MAX_BYTES": ("10485760", "largest connector answer accepted, in bytes"),
    "PORTAL_SYNC_RUN_BUDGET": (
        "3600",
        "seconds a sync run may take; past it the run is stopped at its next connector call (the next run "
        "carries on)",
    ),
    "PORTAL_BREAKER_FAILURES": (
        "5",
        "consecutive failed calls (timeouts, unreachable, 5xx) after which a connection's calls fail fast for a "
        "cool-down",
    ),
    "PORTAL_BREAKER_COOLDOWN": (
        "30",
        "seconds before one probe call may go to a connection whose breaker opened; doubles after each failed "
        "probe, up to 5 minutes",
    ),
    "PORTAL_ERP_TAB_CONCURRENCY": (
        "2",
        "ERP tab calls in flight per connection; one more is answered at once with \"the ERP is slow\"",
    ),
    "PORTAL_ERP_TAB_MAX_INFLIGHT": (
        "4",
        "ERP tab calls in flight over all connections (keep it below the web server's threads)",
    ),
    "PORTAL_ERP_TAB_CACHE_SECONDS": (
        "10",
        "seconds the ERP tab's live values of an actor are reused (0 = off); Sync now and writes refresh them",
    ),
    "PORTAL_SMTP_URL": (
        None,
        "mail server for e-mail alerts: smtp://user:password@host:587?starttls=on or smtps://user:password@host:465",
    ),
    "PORTAL_ALERT_FROM": ("erp-sync-portal@localhost", "the From address of alert e-mails"),
    "PORTAL_ALERT_DIGEST_HOUR": ("7", "hour (UTC, 0-23) from which the daily alert digest is sent"),
    "PORTAL_SECURE_COOKIES": ("off", "on/off: mark session cookies Secure (turn on behind HTTPS)"),
    "PORTAL_SESSION_MAX_HOURS": (
        "12",
        "hours a sign-in lasts at most, however active the user is (idle sessions end after 8 hours)",
    ),
    "PORTAL_RATELIMIT_STORAGE_URI": (
        None,
        "where rate-limit counters live; default database:// (the portal's database, shared by every process) on "
        "PostgreSQL and memory:// (per process) on SQLite; redis://host:6379 also works",
    ),
    "PORTAL_RATELIMIT_LOGIN": ("10/minute", "sign-in attempts per account and client address"),
    "PORTAL_RATELIMIT_LOGIN_ADDRESS": ("30/minute", "sign-in attempts per client address, whatever the account"),
    "PORTAL_RATELIMIT_ERP_SEARCH": ("60/minute", "ERP searches (Connect dialog, simple and advanced) per user"),
    "PORTAL_RATELIMIT_TEST_CONNECTION": ("10/minute", "ERP connection tests per admin"),
    "PORTAL_RATELIMIT_API": ("120/minute", "automation API requests per token"),
    "PORTAL_LOG_LEVEL": ("INFO", "logging level of the portal's own loggers"),
    "PORTAL_DEMO_ERP_DB": (None, "path of the Demo ERP's SQLite database; default instance/demo_erp.db"),
}


def env_bool(name: str, value: str) -> bool:
    """Strict on/off parsing: a typo must not silently mean 'off'."""
    lowered = value.strip().lower()
    if lowered in {"1", "on", "true", "yes"}:
        return True
    if lowered in {"0", "off", "false", "no"}:
        return False
    raise ConfigError(f"{name} must be on or off, not {value!r}")


def env_int(name: str, value: str, minimum: int = 0) -> int:
    try:
        number = int(value)
    except ValueError:
        raise ConfigError(f"{name} must be a whole number, not {value!r}") from None
    if number < minimum:
        raise ConfigError(f"{name} must be at least {minimum}")
    return number


def env_rate(name: str, value: str) -> str:
    """A rate limit such as ``10/minute`` or ``100 per hour`` (several joined by ``;``)."""
    from limits import parse_many

    try:
        parse_many(value)
    except ValueError:
        raise ConfigError(f"{name} must be a rate such as 10/minute, not {value!r}") from None
    return value


def env_storage_uri(name: str, value: str) -> str:
    from limits.storage import SCHEMES

    from portal.security import limit_storage  # noqa: F401  (registers database://)

    scheme = value.split("://", 1)[0] if "://" in value else ""
    if scheme not in SCHEMES:
        raise ConfigError(f"{name} must be a storage URI such as database://, memory:// or redis://host:6379, "
                          f"not {value!r}")
    return value


def default_storage_uri(database_url: str) -> str:
    """Rate-limit counters shared by every process on PostgreSQL (several workers or hosts are expected there), in
    memory on SQLite (one process)."""
    return "database://" if database_url.startswith("postgresql") else "memory://"


def check_admin_password(password: str | None, email: str | None) -> None:
    """PORTAL_ADMIN_PASSWORD must pass the password policy: the portal refuses to start otherwise."""
    if not password:
        return
    from portal.security.password_policy import problem

    message = problem(password, email=email)
    if message:
        raise ConfigError(f"PORTAL_ADMIN_PASSWORD is refused: {message} Set a stronger one, or leave it unset to "
                          "have a password generated and printed once.")


def _hour(name: str, value: str) -> int:
    hour = env_int(name, value, 0)
    if hour > 23:
        raise ConfigError(f"{name} must be an hour from 0 to 23")
    return hour


def _read_or_create(path: Path, make) -> str:
    """A generated secret kept in instance/ so restarts keep sessions and can decrypt secrets."""
    if path.exists():
        return path.read_text().strip()
    path.parent.mkdir(parents=True, exist_ok=True)
    value = make()
    # Created with owner-only permissions: these files are keys.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(value + "\n")
    return value


def load_config(instance_path: str, environ: dict[str, str] | None = None) -> dict:
    """Build the Flask config mapping from the environment."""
    env = dict(os.environ if environ is None else environ)

    def get(name: str) -> str | None:
        value = env.get(name)
        if value is None or value == "":
            return SETTINGS[name][0]
        return value

    instance = Path(instance_path)
    database_url = get("PORTAL_DATABASE_URL") or f"sqlite:///{instance / 'portal.db'}"
    if database_url.startswith("postgres://"):
        database_url = "postgresql+psycopg://" + database_url[len("postgres://") :]
    elif database_url.startswith("postgresql://"):
        database_url = "postgresql+psycopg://" + database_url[len("postgresql://") :]

    from cryptography.fernet import Fernet

    secret_key = get("PORTAL_SECRET_KEY") or _read_or_create(
        instance / "secret_key", lambda: secrets.token_urlsafe(48)
    )
    if len(secret_key) < 16:
        raise ConfigError("PORTAL_SECRET_KEY must be at least 16 characters")
    keys = get("PORTAL_ENCRYPTION_KEYS") or _read_or_create(
        instance / "encryption_keys", lambda: Fernet.generate_key().decode()
    )
    check_admin_password(get("PORTAL_ADMIN_PASSWORD"), get("PORTAL_ADMIN_EMAIL"))
    networks = [n.strip() for n in (get("PORTAL_CONNECTOR_ALLOWED_NETWORKS") or "").split(",") if n.strip()]

    return {
        "SQLALCHEMY_DATABASE_URI": database_url,
        "SECRET_KEY": secret_key,
        "ENCRYPTION_KEYS": [k.strip() for k in keys.split(",") if k.strip()],
        "ADMIN_EMAIL": get("PORTAL_ADMIN_EMAIL"),
        "ADMIN_PASSWORD": get("PORTAL_ADMIN_PASSWORD"),
        "DEMO_DATA": env_bool("PORTAL_DEMO_DATA", get("PORTAL_DEMO_DATA")),
        "SCHEDULER": env_bool("PORTAL_SCHEDULER", get("PORTAL_SCHEDULER")),
        "SCHEDULER_LEADER_RETRY": env_int("PORTAL_SCHEDULER_LEADER_RETRY", get("PORTAL_SCHEDULER_LEADER_RETRY"), 1),
        "CONNECTOR_ALLOWED_NETWORKS": networks,
        "CONNECTOR_TIMEOUT": env_int("PORTAL_CONNECTOR_TIMEOUT", get("PORTAL_CONNECTOR_TIMEOUT"), 1),
        "CONNECTOR_MAX_BYTES": env_int("PORTAL_CONNECTOR_MAX_BYTES", get("PORTAL_CONNECTOR_MAX_BYTES"), 1024),
        "SYNC_RUN_BUDGET": env_int("PORTAL_SYNC_RUN_BUDGET", get("PORTAL_SYNC_RUN_BUDGET"), 60),
        "BREAKER_FAILURES": env_int("PORTAL_BREAKER_FAILURES", get("PORTAL_BREAKER_FAILURES"), 1),
        "BREAKER_COOLDOWN": env_int("PORTAL_BREAKER_COOLDOWN", get("PORTAL_BREAKER_COOLDOWN"), 1),
        "ERP_TAB_CONCURRENCY": env_int("PORTAL_ERP_TAB_CONCURRENCY", get("PORTAL_ERP_TAB_CONCURRENCY"), 1),
        "ERP_TAB_MAX_INFLIGHT": env_int("PORTAL_ERP_TAB_MAX_INFLIGHT", get("PORTAL_ERP_TAB_MAX_INFLIGHT"), 1),
        "ERP_TAB_CACHE_SECONDS": env_int("PORTAL_ERP_TAB_CACHE_SECONDS", get("PORTAL_ERP_TAB_CACHE_SECONDS"), 0),
        "SMTP_URL": get("PORTAL_SMTP_URL") or None,
        "ALERT_FROM": get("PORTAL_ALERT_FROM"),
        "ALERT_DIGEST_HOUR": _hour("PORTAL_ALERT_DIGEST_HOUR", get("PORTAL_ALERT_DIGEST_HOUR")),
        "SESSION_COOKIE_SECURE": env_bool("PORTAL_SECURE_COOKIES", get("PORTAL_SECURE_COOKIES")),
        "SESSION_MAX_HOURS": env_int("PORTAL_SESSION_MAX_HOURS", get("PORTAL_SESSION_MAX_HOURS"), 1),
        # Flask-Limiter's own setting (portal/security/limits.py)
        "RATELIMIT_STORAGE_URI": env_storage_uri("PORTAL_RATELIMIT_STORAGE_URI",
                                                 get("PORTAL_RATELIMIT_STORAGE_URI")
                                                 or default_storage_uri(database_url)),
        "LIMIT_LOGIN": env_rate("PORTAL_RATELIMIT_LOGIN", get("PORTAL_RATELIMIT_LOGIN")),
        "LIMIT_LOGIN_ADDRESS": env_rate("PORTAL_RATELIMIT_LOGIN_ADDRESS", get("PORTAL_RATELIMIT_LOGIN_ADDRESS")),
        "LIMIT_ERP_SEARCH": env_rate("PORTAL_RATELIMIT_ERP_SEARCH", get("PORTAL_RATELIMIT_ERP_SEARCH")),
        "LIMIT_API": env_rate("PORTAL_RATELIMIT_API", get("PORTAL_RATELIMIT_API")),
        "LIMIT_TEST_CONNECTION": env_rate("PORTAL_RATELIMIT_TEST_CONNECTION",
                                          get("PORTAL_RATELIMIT_TEST_CONNECTION")),
        "LOG_LEVEL": get("PORTAL_LOG_LEVEL"),
        "DEMO_ERP_DB": get("PORTAL_DEMO_ERP_DB") or str(instance / "demo_erp.db"),
    }


# Settings that do not come from the environment.
STATIC_CONFIG = {
    "SESSION_COOKIE_HTTPONLY": True,
    "SESSION_COOKIE_SAMESITE": "Lax",
    "PERMANENT_SESSION_LIFETIME": 8 * 3600,
    # The token lives as long as the session, so a long-open ERP tab keeps working.
    "WTF_CSRF_TIME_LIMIT": None,
    "MAX_CONTENT_LENGTH": 2 * 1024 * 1024,
    # JSON columns (link bases, run counts …) written and read through the faster codec (the same values)
    "SQLALCHEMY_ENGINE_OPTIONS": {"pool_pre_ping": True, "json_serializer": jsoncodec.dumps,
                                  "json_deserializer": jsoncodec.loads},
    "TESTING": False,
}
