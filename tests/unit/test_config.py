"""Configuration parsing, and the README documenting every PORTAL_* variable."""

from __future__ import annotations

from pathlib import Path

import pytest

from portal.config import SETTINGS, ConfigError, env_bool, load_config

ROOT = Path(__file__).resolve().parents[2]


def test_readme_documents_every_setting():
    readme = (ROOT / "README.md").read_text()
    missing = [name for name in SETTINGS if name not in readme]
    assert missing == []


def test_defaults_use_instance_folder_and_generate_keys_once(tmp_path):
    first = load_config(str(tmp_path), environ={})
    second = load_config(str(tmp_path), environ={})
    assert first["SQLALCHEMY_DATABASE_URI"] == f"sqlite:///{tmp_path / 'portal.db'}"
    assert first["SECRET_KEY"] == second["SECRET_KEY"] and len(first["SECRET_KEY"]) >= 32
    assert first["ENCRYPTION_KEYS"] == second["ENCRYPTION_KEYS"]
    assert oct((tmp_path / "secret_key").stat().st_mode)[-3:] == "600"


def test_postgres_urls_use_psycopg3(tmp_path):
    config = load_config(str(tmp_path), environ={"PORTAL_DATABASE_URL": "postgresql://u@h/db"})
    assert config["SQLALCHEMY_DATABASE_URI"] == "postgresql+psycopg://u@h/db"


@pytest.mark.parametrize("value, expected", [("on", True), ("OFF", False), ("true", True), ("0", False)])
def test_env_bool(value, expected):
    assert env_bool("X", value) is expected


def test_bad_values_are_refused(tmp_path):
    with pytest.raises(ConfigError, match="PORTAL_SCHEDULER must be on or off"):
        load_config(str(tmp_path), environ={"PORTAL_SCHEDULER": "maybe"})
    with pytest.raises(ConfigError, match="whole number"):
        load_config(str(tmp_path), environ={"PORTAL_CONNECTOR_TIMEOUT": "soon"})
    with pytest.raises(ConfigError, match="at least 16"):
        load_config(str(tmp_path), environ={"PORTAL_SECRET_KEY": "short"})
