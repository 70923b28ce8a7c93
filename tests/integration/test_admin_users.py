"""Settings → Users and Groups: list, create/edit, licence toggle, rules, audit, and who may get in."""

from __future__ import annotations

import json
import re

import pytest
from sqlalchemy import select

from portal.extensions import db
from portal.models import AuditEvent, User, UserGroup
from tests.conftest import PASSWORD

pytestmark = pytest.mark.db

# The endpoints this module's screens own; the sweep below builds a URL for each of their rules.
OWN_ENDPOINT_PREFIXES = ("admin.user_", "admin.group_", "admin.list")



@pytest.fixture
def group(app, users):
    with app.app_context():
        team = UserGroup(name="Sales", description="Sellers")
        team.members = [db.session.get(User, users["bob"])]
        db.session.add(team)
        db.session.commit()
        return team.id


def _text(response) -> str:
    return response.get_data(as_text=True)


def _user(app, email: str) -> User | None:
    with app.app_context():
        user = db.session.scalar(select(User).where(User.email == email))
        if user is not None:
            user.group_names = [g.name for g in user.groups]
            db.session.expunge(user)
        return user


def _audit(app, action: str) -> list[AuditEvent]:
    with app.app_context():
        events = list(db.session.scalars(select(AuditEvent).where(AuditEvent.action == action)))
        for event in events:
            db.session.expunge(event)
        return events


def _user_form(**overrides) -> dict:
    data = {"email": "dave@example.com", "name": "Dave New", "role": "user", "is_active": "y",
            "password": "a-long-enough-password"}
    data.update(overrides)
    return {k: v for k, v in data.items() if v is not None}


# --- who may get in ----------------------------------------------------------------------------------------


def _own_urls(app) -> list[tuple[str, str]]:
    """(method, url) for every GET/POST rule of the users, groups and lists screens, with ids filled in."""
    urls = []
    for rule in app.url_map.iter_rules():
        if not rule.endpoint.startswith(OWN_ENDPOINT_PREFIXES):
            continue
        values = {arg: ("country" if arg == "list_name" else 1) for arg in rule.arguments}
        with app.test_request_context():
            from flask import url_for

            url = url_for(rule.endpoint, **values)
        for method in ("GET", "POST"):
            if method in rule.methods:
                urls.append((method, url))
    return urls


def test_the_sweep_covers_every_screen(app):
    urls = {url for _, url in _own_urls(app)}
    for expected in ("/settings/users", "/settings/users/new", "/settings/users/1/edit", "/settings/users/1/licence",
                     "/settings/groups", "/settings/groups/new", "/settings/groups/1/edit", "/settings/groups/1/delete",
                     "/settings/lists", "/settings/lists/country/items", "/settings/lists/items/1/edit",
                     "/settings/lists/items/1/move", "/settings/lists/items/1/delete",
                     "/settings/lists/items/1/restore"):
        assert expected in urls
    assert len(_own_urls(app)) >= 18


def test_plain_user_gets_403_everywhere(app, user_client, group):
    for method, url in _own_urls(app):
        response = user_client.open(url, method=method, data={"name": "x", "erp_licence": "1"})
        assert response.status_code == 403, (method, url)
        htmx = user_client.open(url, method=method, htmx=True)
        assert htmx.status_code == 403, (method, url)
    with app.app_context():
        assert db.session.get(UserGroup, group) is not None
        assert db.session.scalar(select(AuditEvent)) is None  # nothing was changed


def test_plain_user_changes_nothing(app, user_client, users):
    user_client.post(f"/settings/users/{users['carol']}/licence", data={"erp_licence": "1"})
    user_client.post(f"/settings/users/{users['bob']}/edit", data=_user_form(email="bob@example.com", role="admin"))
    assert _user(app, "carol@example.com").erp_licence is False
    assert _user(app, "bob@example.com").role == "user"


def test_anonymous_is_redirected_to_login(app, client):
    for method, url in _own_urls(app):
        response = client.open(url, method=method)
        assert response.status_code == 302, (method, url)
        assert "/login" in response.headers["Location"]


def test_anonymous_htmx_gets_401_with_hx_redirect(client):
    response = client.get("/settings/users", htmx={"current_url": "http://localhost/settings/users"})
    assert response.status_code == 401
    assert response.headers["HX-Redirect"] == "/login?next=/settings/users"
    response = client.post("/settings/users/1/licence", htmx=True)
    assert response.status_code == 401 and response.headers["HX-Redirect"].startswith("/login")


# --- users list and licence seats --------------------------------------------------------------------------


def test_user_list_shows_people_roles_groups_and_seat_count(admin_client, group):
    response = admin_client.get("/settings/users")
    page = _text(response)
    assert response.status_code == 200 and "<html" in page
    assert "2 ERP Sync licences assigned" in page
    for text in ("Alice Admin", "alice@example.com", "Bob User", "Carol Outsider", "Admin", "Sales"):
        assert text in page
    bob_row = re.search(r'<tr id="user-\d+">\s*<td><a[^>]*>Bob User</a>.*?</tr>', page, re.S).group(0)
    assert "Licensed" in bob_row and "Sales" in bob_row
    assert 'hx-target="closest tr"' in bob_row and 'hx-swap="outerHTML"' in bob_row
    nav = re.search(r'<nav aria-label="Settings".*?</nav>', page, re.S).group(0)
    for label in ("Sync", "Users", "Groups", "Lists", "Audit log"):
        assert f">{label}</a>" in nav
    assert 'href="/settings/users" aria-current="page"' in nav


def test_licence_toggle_swaps_the_row(app, admin_client, users):
    carol = users["carol"]
    response = admin_client.post(f"/settings/users/{carol}/licence", data={"erp_licence": "1"}, htmx=True)
    body = _text(response)
    assert response.status_code == 200
    assert "<html" not in body
    assert body.lstrip().startswith(f'<tr id="user-{carol}">') and body.rstrip().endswith("</tr>")
    assert "Licensed" in body and 'name="erp_licence" value="0"' in body
    triggers = json.loads(response.headers["HX-Trigger"])
    assert triggers["licences-changed"] is True
    assert triggers["toast"][0]["level"] == "success"
    assert _user(app, "carol@example.com").erp_licence is True
    assert "3 ERP Sync licences assigned" in _text(admin_client.get("/settings/users/licences", htmx=True))
    # The same request again is not a second change.
    admin_client.post(f"/settings/users/{carol}/licence", data={"erp_licence": "1"}, htmx=True)
    events = _audit(app, "user.licence")
    assert len(events) == 1
    assert events[0].after == {"erp_licence": True} and events[0].actor_label == "alice@example.com"


def test_licence_toggle_without_htmx_redirects(app, admin_client, users):
    response = admin_client.post(f"/settings/users/{users['bob']}/licence", data={"erp_licence": "0"})
    assert response.status_code == 302 and response.headers["Location"] == "/settings/users"
    assert _user(app, "bob@example.com").erp_licence is False
    assert "1 ERP Sync licence assigned" in _text(admin_client.get("/settings/users"))


# --- create and edit users ---------------------------------------------------------------------------------


def test_create_user(app, admin_client, group):
    page = _text(admin_client.get("/settings/users/new"))
    assert '<label for="password">' in page and "At least 12 characters." in page
    assert f'id="groups-{group}"' in page and f'<label for="groups-{group}">' in page
    response = admin_client.post("/settings/users/new", htmx=True,
                                 data=_user_form(email="Dave@Example.com", erp_licence="y", groups=[str(group)]))
    assert response.status_code == 200 and response.headers["HX-Redirect"] == "/settings/users"
    dave = _user(app, "dave@example.com")
    assert (dave.name, dave.role, dave.is_active, dave.erp_licence) == ("Dave New", "user", True, True)
    assert dave.group_names == ["Sales"]
    with app.app_context():
        assert db.session.get(User, dave.id).check_password("a-long-enough-password")
    event = _audit(app, "user.create")[0]
    assert event.after["email"] == "dave@example.com" and event.actor_label == "alice@example.com"
    assert "a-long-enough-password" not in json.dumps(event.after)


def test_create_inactive_admin(app, admin_client):
    response = admin_client.post("/settings/users/new", data=_user_form(role="admin", is_active=None))
    assert response.status_code == 302
    dave = _user(app, "dave@example.com")
    assert (dave.role, dave.is_active) == ("admin", False)


@pytest.mark.parametrize(("overrides", "message"), [
    ({"email": "BOB@example.com"}, "Another user already has this e-mail address."),
    ({"email": "not-an-email"}, "Enter a valid e-mail address."),
    ({"password": "short"}, "The password must be at least 12 characters."),
    ({"password": ""}, "The password must be at least 12 characters."),
    ({"role": "superuser"}, "Not a valid choice"),
])
def test_create_user_invalid_is_422(app, admin_client, overrides, message):
    response = admin_client.post("/settings/users/new", htmx=True, data=_user_form(**overrides))
    body = _text(response)
    assert response.status_code == 422
    assert "<html" not in body and 'id="user-form"' in body
    assert message in body
    with app.app_context():
        assert db.session.scalar(select(User).where(User.name == "Dave New")) is None


def test_edit_user(app, admin_client, users, group):
    url = f"/settings/users/{users['carol']}/edit"
    page = _text(admin_client.get(url))
    assert 'value="carol@example.com"' in page and "Leave blank to keep the current password." in page
    assert 'type="password"' in page and "correct horse" not in page
    response = admin_client.post(url, htmx=True, data=_user_form(
        email="carol@example.com", name="Carol Renamed", password="", groups=[str(group)], erp_licence="y"))
    assert response.headers["HX-Redirect"] == "/settings/users"
    carol = _user(app, "carol@example.com")
    assert (carol.name, carol.erp_licence, carol.group_names) == ("Carol Renamed", True, ["Sales"])
    with app.app_context():
        assert db.session.get(User, users["carol"]).check_password(PASSWORD)  # blank keeps the password
    admin_client.post(url, data=_user_form(email="carol@example.com", password="a-brand-new-password"))
    with app.app_context():
        assert db.session.get(User, users["carol"]).check_password("a-brand-new-password")
    changed = [e for e in _audit(app, "user.update") if e.after.get("password")]
    assert changed and changed[0].after["password"] != "a-brand-new-password"


def test_deactivate_user(app, admin_client, users):
    response = admin_client.post(f"/settings/users/{users['bob']}/edit",
                                 data=_user_form(email="bob@example.com", name="Bob User", password=None,
                                                 is_active=None))
    assert response.status_code == 302
    assert _user(app, "bob@example.com").is_active is False
    assert "inactive" in _text(admin_client.get("/settings/users"))


def test_duplicate_email_on_edit_is_422(app, admin_client, users):
    response = admin_client.post(f"/settings/users/{users['carol']}/edit", htmx=True,
                                 data=_user_form(email="bob@example.com", password=""))
    assert response.status_code == 422
    assert "Another user already has this e-mail address." in _text(response)
    assert _user(app, "carol@example.com") is not None


@pytest.mark.parametrize("overrides", [{"role": "user"}, {"is_active": None}])
def test_last_admin_cannot_be_demoted_or_deactivated(app, admin_client, users, overrides):
    url = f"/settings/users/{users['alice']}/edit"
    data = _user_form(email="alice@example.com", name="Alice Admin", role="admin", password="")
    data.update(overrides)
    response = admin_client.post(url, htmx=True, data={k: v for k, v in data.items() if v is not None})
    assert response.status_code == 422
    assert "This is the last active admin" in _text(response)
    alice = _user(app, "alice@example.com")
    assert (alice.role, alice.is_active) == ("admin", True)


def test_an_admin_can_be_demoted_when_another_remains(app, admin_client, users):
    admin_client.post(f"/settings/users/{users['bob']}/edit",
                      data=_user_form(email="bob@example.com", name="Bob User", role="admin", password=""))
    response = admin_client.post(f"/settings/users/{users['alice']}/edit",
                                 data=_user_form(email="alice@example.com", name="Alice Admin", role="user",
                                                 password=""))
    assert response.status_code == 302
    assert _user(app, "alice@example.com").role == "user"
    # Alice is no admin any more: the settings are closed to her now.
    assert admin_client.get("/settings/users").status_code == 403


def test_missing_user_is_404(admin_client):
    assert admin_client.get("/settings/users/4242/edit").status_code == 404
    assert admin_client.post("/settings/users/4242/licence").status_code == 404


# --- groups ------------------------------------------------------------------------------------------------


def test_group_list_and_create(app, admin_client, users):
    assert "No groups yet." in _text(admin_client.get("/settings/groups"))
    page = _text(admin_client.get("/settings/groups/new"))
    assert f'<label for="members-{users["bob"]}">' in page
    response = admin_client.post("/settings/groups/new", htmx=True, data={
        "name": "Support", "description": "Helpdesk", "members": [str(users["bob"]), str(users["carol"])]})
    assert response.headers["HX-Redirect"] == "/settings/groups"
    with app.app_context():
        support = db.session.scalar(select(UserGroup).where(UserGroup.name == "Support"))
        assert sorted(u.email for u in support.members) == ["bob@example.com", "carol@example.com"]
    page = _text(admin_client.get("/settings/groups"))
    assert "Support" in page and "Helpdesk" in page and "Bob User, Carol Outsider" in page
    assert _audit(app, "group.create")[0].after["members"] == ["bob@example.com", "carol@example.com"]


def test_group_invalid_is_422(app, admin_client, group):
    response = admin_client.post("/settings/groups/new", htmx=True, data={"name": "sales"})
    assert response.status_code == 422 and "Another group already has this name." in _text(response)
    response = admin_client.post("/settings/groups/new", htmx=True, data={"name": "  "})
    assert response.status_code == 422 and "A group needs a name." in _text(response)
    with app.app_context():
        assert db.session.scalars(select(UserGroup)).all().__len__() == 1


def test_group_edit_members(app, admin_client, users, group):
    url = f"/settings/groups/{group}/edit"
    page = _text(admin_client.get(url))
    assert re.search(rf'id="members-{users["bob"]}"[^>]*checked', page, re.S)
    response = admin_client.post(url, data={"name": "Sales Nordic", "description": "",
                                            "members": [str(users["carol"])]})
    assert response.status_code == 302
    with app.app_context():
        team = db.session.get(UserGroup, group)
        assert team.name == "Sales Nordic" and [u.email for u in team.members] == ["carol@example.com"]


def test_group_delete_with_confirmation(app, admin_client, users, group):
    page = _text(admin_client.get("/settings/groups"))
    form = re.search(rf'<form method="post" action="/settings/groups/{group}/delete".*?</form>', page, re.S).group(0)
    assert "hx-confirm=" in form and "Delete group “Sales”?" in form
    response = admin_client.post(f"/settings/groups/{group}/delete", htmx=True)
    assert response.headers["HX-Redirect"] == "/settings/groups"
    with app.app_context():
        assert db.session.get(UserGroup, group) is None
        assert db.session.get(User, users["bob"]) is not None  # members stay
    assert _audit(app, "group.delete")[0].before == {"name": "Sales"}
    assert admin_client.get("/settings/groups/delete").status_code in (404, 405)
