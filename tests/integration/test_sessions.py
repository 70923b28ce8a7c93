"""Revocable sessions (portal/auth/sessions.py): a copied session cookie stops working after sign-out, a password
change or reset, deactivation (and reactivation), a role or licence change, "sign out everywhere" (by the user and
by an admin), and once the session is older than its absolute lifetime however active it was."""

from __future__ import annotations

import pytest

from portal.auth import sessions
from portal.extensions import db
from portal.models import User
from tests.conftest import PASSWORD, login
from tests.integration.test_admin_users import _audit

pytestmark = pytest.mark.db

NEW_PASSWORD = "violet lantern orchard 42"


def _sign_in(app, email: str, password: str = PASSWORD):
    client = app.test_client()
    response = client.post("/login", data={"email": email, "password": password})
    assert response.status_code == 302, response.get_data(as_text=True)
    return client


def _copy(app, client):
    """Another client holding a copy of ``client``'s session cookie (a captured cookie)."""
    cookie = client.get_cookie("session")
    assert cookie is not None
    thief = app.test_client()
    thief.set_cookie("session", cookie.value)
    return thief


def _signed_in(client) -> bool:
    response = client.get("/companies")
    if response.status_code == 200:
        return True
    assert response.status_code == 302 and "/login" in response.headers["Location"], response.status_code
    return False


def _user_form(**values) -> dict:
    data = {"email": "bob@example.com", "name": "Bob User", "role": "user", "is_active": "y", "erp_licence": "y",
            "password": ""}
    data.update(values)
    return {k: v for k, v in data.items() if v is not None}


def _epoch(app, user_id: int) -> int:
    with app.app_context():
        return db.session.get(User, user_id).session_epoch


# --- sign-out ------------------------------------------------------------------------------------------------------


def test_a_cookie_captured_before_sign_out_is_refused_after_it(app, users):
    bob = _sign_in(app, "bob@example.com")
    thief = _copy(app, bob)
    assert _signed_in(thief)
    assert bob.post("/logout").status_code == 302
    assert not _signed_in(thief)
    assert _signed_in(_sign_in(app, "bob@example.com"))  # signing in again works, in the new epoch
    (event,) = _audit(app, "auth.logout")
    assert event.after == {"sessions": "ended"}


def test_sign_out_ends_the_users_sessions_on_every_device(app, users):
    laptop = _sign_in(app, "bob@example.com")
    phone = _sign_in(app, "bob@example.com")
    alice = _sign_in(app, "alice@example.com")
    laptop.post("/logout")
    assert not _signed_in(phone)
    assert _signed_in(alice)  # another user's session is not touched


def test_an_ended_session_is_told_why(app, users):
    bob = _sign_in(app, "bob@example.com")
    thief = _copy(app, bob)
    bob.post("/logout")
    response = thief.get("/companies", follow_redirects=True)
    assert "Your session has ended. Please sign in again." in response.get_data(as_text=True)
    htmx = _copy(app, _sign_in(app, "bob@example.com"))
    _sign_in(app, "bob@example.com").post("/logout")
    response = htmx.get("/companies", htmx={"current_url": "http://localhost/companies"})
    assert response.status_code == 401 and response.headers["HX-Redirect"].startswith("/login")


# --- password -------------------------------------------------------------------------------------------------------


def test_a_password_change_by_the_user_ends_every_other_session(app, users):
    bob = _sign_in(app, "bob@example.com")
    thief = _copy(app, bob)
    response = bob.post("/account/password", data={"current_password": PASSWORD, "new_password": NEW_PASSWORD,
                                                   "confirm_password": NEW_PASSWORD})
    assert response.status_code == 302 and response.headers["Location"] == "/account"
    assert _signed_in(bob)  # the browser that changed it stays signed in
    assert not _signed_in(thief)
    assert _sign_in(app, "bob@example.com", NEW_PASSWORD)
    (event,) = _audit(app, "auth.password_change")
    assert event.actor_label == "bob@example.com" and NEW_PASSWORD not in str(event.after)


def test_the_own_password_change_needs_the_current_password(app, users):
    bob = _sign_in(app, "bob@example.com")
    response = bob.post("/account/password", htmx=True, data={
        "current_password": "not my password", "new_password": NEW_PASSWORD, "confirm_password": NEW_PASSWORD})
    assert response.status_code == 422
    assert "The current password is not correct." in response.get_data(as_text=True)
    assert 'id="password-form"' in response.get_data(as_text=True)  # the form partial, for htmx to swap
    assert _signed_in(bob) and _epoch(app, users["bob"]) == 0


def test_a_password_reset_by_an_admin_ends_every_session(app, users):
    bob = _sign_in(app, "bob@example.com")
    thief = _copy(app, bob)
    admin = _sign_in(app, "alice@example.com")
    response = admin.post(f"/settings/users/{users['bob']}/edit", htmx=True,
                          data=_user_form(password=NEW_PASSWORD))
    assert response.status_code == 200 and response.headers["HX-Redirect"] == "/settings/users"
    assert not _signed_in(bob) and not _signed_in(thief)
    assert _signed_in(admin)
    (event,) = _audit(app, "user.update")
    assert event.after["sessions"] == "ended"


def test_saving_a_user_without_changes_that_matter_keeps_their_sessions(app, users):
    bob = _sign_in(app, "bob@example.com")
    admin = _sign_in(app, "alice@example.com")
    admin.post(f"/settings/users/{users['bob']}/edit", htmx=True, data=_user_form(name="Bob Renamed"))
    assert _signed_in(bob)


# --- deactivation, role, licence ------------------------------------------------------------------------------------


def test_a_cookie_from_before_a_deactivation_stays_dead_after_reactivation(app, users):
    bob = _sign_in(app, "bob@example.com")
    thief = _copy(app, bob)
    admin = _sign_in(app, "alice@example.com")
    url = f"/settings/users/{users['bob']}/edit"
    assert admin.post(url, htmx=True, data=_user_form(is_active=None)).status_code == 200
    assert not _signed_in(thief)
    assert admin.post(url, htmx=True, data=_user_form()).status_code == 200
    assert not _signed_in(thief) and not _signed_in(bob)
    assert _signed_in(_sign_in(app, "bob@example.com"))  # bob himself signs in again


@pytest.mark.parametrize("change", [{"role": "admin"}, {"erp_licence": None}])
def test_a_role_or_licence_change_ends_the_sessions(app, users, change):
    bob = _sign_in(app, "bob@example.com")
    thief = _copy(app, bob)
    admin = _sign_in(app, "alice@example.com")
    admin.post(f"/settings/users/{users['bob']}/edit", htmx=True, data=_user_form(**change))
    assert not _signed_in(thief) and not _signed_in(bob)


def test_the_licence_toggle_ends_the_sessions(app, users):
    bob = _sign_in(app, "bob@example.com")
    thief = _copy(app, bob)
    admin = _sign_in(app, "alice@example.com")
    response = admin.post(f"/settings/users/{users['bob']}/licence", data={"erp_licence": "0"}, htmx=True)
    assert response.status_code == 200
    assert not _signed_in(thief)


def test_an_admin_changing_their_own_row_stays_signed_in_here_only(app, users):
    here = _sign_in(app, "alice@example.com")
    elsewhere = _sign_in(app, "alice@example.com")
    response = here.post(f"/settings/users/{users['alice']}/licence", data={"erp_licence": "0"}, htmx=True)
    assert response.status_code == 200
    assert _signed_in(here) and not _signed_in(elsewhere)


# --- sign out everywhere ------------------------------------------------------------------------------------------


def test_sign_out_everywhere_else_by_the_user(app, users):
    laptop = _sign_in(app, "bob@example.com")
    phone = _sign_in(app, "bob@example.com")
    thief = _copy(app, laptop)
    page = laptop.get("/account").get_data(as_text=True)
    assert "Sign out everywhere else" in page and "Change your password" in page
    response = laptop.post("/account/sign-out-everywhere", htmx=True)
    assert response.status_code == 200 and response.headers["HX-Redirect"] == "/account"
    assert _signed_in(laptop)
    assert not _signed_in(phone) and not _signed_in(thief)
    (event,) = _audit(app, "auth.sign_out_everywhere")
    assert event.actor_label == "bob@example.com" and event.object_id == users["bob"]


def test_sign_out_everywhere_by_an_admin(app, users):
    bob = _sign_in(app, "bob@example.com")
    thief = _copy(app, bob)
    admin = _sign_in(app, "alice@example.com")
    assert f"/settings/users/{users['bob']}/sign-out" in admin.get("/settings/users").get_data(as_text=True)
    response = admin.post(f"/settings/users/{users['bob']}/sign-out", htmx=True)
    assert response.status_code == 200 and f'id="user-{users["bob"]}"' in response.get_data(as_text=True)
    assert "signed out everywhere" in response.headers["HX-Trigger"]
    assert not _signed_in(bob) and not _signed_in(thief)
    assert _signed_in(admin)
    (event,) = _audit(app, "user.sessions_end")
    assert event.actor_label == "alice@example.com" and event.object_id == users["bob"]
    plain = admin.post(f"/settings/users/{users['carol']}/sign-out")
    assert plain.status_code == 302 and plain.headers["Location"] == "/settings/users"


def test_only_admins_sign_others_out(app, users):
    bob = _sign_in(app, "bob@example.com")
    alice = _sign_in(app, "alice@example.com")
    assert bob.post(f"/settings/users/{users['alice']}/sign-out").status_code == 403
    assert _signed_in(alice)


# --- lifetime -------------------------------------------------------------------------------------------------------


def test_a_session_ends_after_its_absolute_lifetime_however_active(app, users, monkeypatch):
    start = sessions.now()
    bob = _sign_in(app, "bob@example.com")
    thief = _copy(app, bob)
    clock = {"now": start}
    monkeypatch.setattr(sessions, "now", lambda: clock["now"])
    for hour in range(1, 12):  # active every hour: the sliding expiry never runs out
        clock["now"] = start + hour * 3600
        assert _signed_in(bob)
    clock["now"] = start + 12 * 3600 + 1
    assert not _signed_in(bob) and not _signed_in(thief)


@pytest.fixture
def short_sessions(app_config):
    app_config["SESSION_MAX_HOURS"] = 1
    return app_config


def test_the_lifetime_comes_from_the_config(short_sessions, app, users, monkeypatch):
    start = sessions.now()
    bob = _sign_in(app, "bob@example.com")
    monkeypatch.setattr(sessions, "now", lambda: start + 3599)
    assert _signed_in(bob)
    monkeypatch.setattr(sessions, "now", lambda: start + 3601)
    assert not _signed_in(bob)


def test_the_default_lifetime_is_twelve_hours(app):
    assert app.config["SESSION_MAX_HOURS"] == 12
    assert app.config["PERMANENT_SESSION_LIFETIME"] == 8 * 3600  # idle sessions end sooner (sliding)


def test_a_session_from_before_the_epoch_column_is_refused(app, users):
    """The migration puts existing users at epoch 1: a cookie that carries no epoch reads as 0."""
    with app.app_context():
        db.session.get(User, users["bob"]).session_epoch = 1
        db.session.commit()
    old = app.test_client()
    login(old, users["bob"])  # user_id only, as sessions were written before
    assert not _signed_in(old)


def test_the_login_stamps_user_epoch_and_time(app, users):
    with app.app_context():
        db.session.get(User, users["bob"]).session_epoch = 7
        db.session.commit()
    bob = _sign_in(app, "bob@example.com")
    with bob.session_transaction() as session:
        assert session["user_id"] == users["bob"] and session["epoch"] == 7
        assert abs(session["login_at"] - sessions.now()) < 60
    assert _signed_in(bob)
