"""The password policy (portal/security/password_policy.py) and every path that sets a password: Settings → Users
(create, reset), the user's own change, ``flask create-user``, the first admin from PORTAL_ADMIN_PASSWORD (a
ConfigError at start) and the generated first-admin password."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from portal import create_app
from portal.config import ConfigError, load_config
from portal.extensions import db
from portal.models import User
from portal.security import password_policy
from portal.security.password_policy import problem
from tests.conftest import PASSWORD, login

GOOD = "violet lantern orchard 42"


# --- the rules ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("password", [
    "correct horse battery", GOOD, "a-long-enough-password", "Tr0ub4dor&3-kangaroo", "x7#Lq9!vR2$mWp",
    "Blåbærsyltetøy på skiva",
])
def test_good_passwords_pass(password):
    assert problem(password, email="dave@example.com", name="Dave New") is None


@pytest.mark.parametrize("password,message", [
    ("", "at least 12 characters"),
    ("a", "at least 12 characters"),
    ("Sh0rt!pass", "at least 12 characters"),
    ("x" * 201, "at most 200 characters"),
    ("qwerty123456", "list of common passwords"),
    ("1qaz2wsx3edc", "list of common passwords"),
    ("LeaveMeAlone", "list of common passwords"),
    ("password1234", "list of common passwords"),
    ("Password123!", "too easy to guess"),
    ("aaaaaaaaaaaa", "too easy to guess"),
    ("zxcvbnmasdfgh", "too easy to guess"),
    ("1234567890123", "too easy to guess"),
    ("abcdefghijklmn", "too easy to guess"),
    ("dave@example.com", "must not be the e-mail address"),
    ("Dave@Example.COM", "must not be the e-mail address"),
    ("dave@example", "too easy to guess"),
    ("davenewdavenew", "too easy to guess"),
    ("portalportal", "too easy to guess"),
])
def test_weak_passwords_are_refused_with_the_reason(password, message):
    assert message in (problem(password, email="dave@example.com", name="Dave New") or "")


def test_a_long_password_is_judged_on_its_start():
    assert problem("pass" * 20) is not None  # zxcvbn looks at 72 characters; a repeat stays a repeat
    assert problem(GOOD * 3) is None


def test_check_raises_weak_password():
    with pytest.raises(password_policy.WeakPassword, match="at least 12"):
        password_policy.check("short")
    password_policy.check(GOOD)


def test_generated_passwords_pass():
    for _ in range(20):
        generated = password_policy.generate()
        assert len(generated) >= 20 and problem(generated) is None


# --- the first admin ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("password,reason", [("a", "at least 12 characters"),
                                             ("Password123!", "too easy to guess"),
                                             ("root@example.org", "must not be the e-mail address")])
def test_a_weak_first_admin_password_stops_the_start(tmp_path, password, reason):
    environ = {"PORTAL_ADMIN_PASSWORD": password, "PORTAL_ADMIN_EMAIL": "root@example.org"}
    with pytest.raises(ConfigError) as raised:
        load_config(str(tmp_path), environ)
    message = str(raised.value)
    assert "PORTAL_ADMIN_PASSWORD is refused" in message and reason in message
    if len(password) > 1:
        assert password not in message  # the message never repeats the password
    with pytest.raises(ConfigError, match="PORTAL_ADMIN_PASSWORD"):
        create_app({"INSTANCE_PATH": str(tmp_path / "instance")}, environ=environ)


def test_a_good_or_missing_first_admin_password_starts(tmp_path):
    assert load_config(str(tmp_path), {"PORTAL_ADMIN_PASSWORD": GOOD})["ADMIN_PASSWORD"] == GOOD
    assert load_config(str(tmp_path), {})["ADMIN_PASSWORD"] is None


def test_the_first_admin_is_checked_when_created_too(app_ctx):
    from portal.services.bootstrap import ensure_first_admin

    with pytest.raises(ConfigError, match="at least 12 characters"):
        ensure_first_admin("root@example.com", "a")
    assert db.session.scalar(select(User)) is None


def test_the_generated_first_admin_password_passes(app_ctx):
    from portal.services.bootstrap import ensure_first_admin

    user, generated = ensure_first_admin("root@example.com", None)
    assert problem(generated, email="root@example.com") is None and user.check_password(generated)


# --- every path that sets a password ------------------------------------------------------------------------------


def _user_form(**values) -> dict:
    data = {"email": "dave@example.com", "name": "Dave New", "role": "user", "is_active": "y",
            "password": "password1234"}
    data.update(values)
    return data


def test_settings_users_create_refuses_a_weak_password_with_a_field_error(admin_client, app):
    response = admin_client.post("/settings/users/new", htmx=True, data=_user_form())
    assert response.status_code == 422
    body = response.get_data(as_text=True)
    assert 'id="password-error"' in body and "list of common passwords" in body
    with app.app_context():
        assert db.session.scalar(select(User).where(User.email == "dave@example.com")) is None


def test_settings_users_reset_refuses_a_weak_password_with_a_field_error(admin_client, app, users):
    response = admin_client.post(f"/settings/users/{users['bob']}/edit", htmx=True,
                                 data=_user_form(email="bob@example.com", name="Bob User",
                                                 password="bob@example.com"))
    assert response.status_code == 422
    assert "must not be the e-mail address" in response.get_data(as_text=True)
    with app.app_context():
        assert db.session.get(User, users["bob"]).check_password(PASSWORD)


def test_the_own_password_change_refuses_a_weak_password_with_a_field_error(app, users):
    client = app.test_client()
    login(client, users["bob"])
    for new, message in (("qwerty123456", "list of common passwords"), ("short", "at least 12 characters")):
        response = client.post("/account/password", htmx=True, data={
            "current_password": PASSWORD, "new_password": new, "confirm_password": new})
        body = response.get_data(as_text=True)
        assert response.status_code == 422 and 'id="new_password-error"' in body and message in body
    mismatch = client.post("/account/password", data={
        "current_password": PASSWORD, "new_password": GOOD, "confirm_password": GOOD + "!"})
    assert mismatch.status_code == 422 and "The two new passwords differ." in mismatch.get_data(as_text=True)
    with app.app_context():
        assert db.session.get(User, users["bob"]).check_password(PASSWORD)


def test_the_create_user_command_refuses_a_weak_password(app, users):
    result = app.test_cli_runner().invoke(args=["create-user", "--email", "eve@example.com",
                                                "--password", "password1234"])
    assert result.exit_code != 0 and "list of common passwords" in result.output
