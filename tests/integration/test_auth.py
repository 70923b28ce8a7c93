"""Login, logout, the first admin, and what anonymous users get."""

from __future__ import annotations

from sqlalchemy import select

from portal.extensions import db
from portal.models import AuditEvent, User
from tests.conftest import PASSWORD


def test_login_with_the_form_and_logout_by_post(client, users):
    page = client.post("/login", data={"email": "Alice@Example.com", "password": PASSWORD})
    assert page.status_code == 302 and page.headers["Location"] == "/"
    assert client.get("/settings/sync").status_code == 200
    assert client.get("/logout").status_code == 405  # never by GET
    assert client.post("/logout").status_code == 302
    assert client.get("/settings/sync").status_code == 302


def test_wrong_password_and_unknown_email_get_the_same_message(app, client, users):
    wrong = client.post("/login", data={"email": "alice@example.com", "password": "nope-nope-nope"})
    unknown = client.post("/login", data={"email": "nobody@example.com", "password": "nope-nope-nope"})
    assert wrong.status_code == unknown.status_code == 422
    assert "Invalid e-mail or password." in wrong.get_data(as_text=True)
    assert "Invalid e-mail or password." in unknown.get_data(as_text=True)
    with app.app_context():
        assert db.session.scalar(select(AuditEvent).where(AuditEvent.action == "auth.login_failed"))


def test_next_parameter_only_redirects_inside_the_portal(client, users):
    ok = client.post("/login", data={"email": "bob@example.com", "password": PASSWORD, "next": "/companies"})
    assert ok.headers["Location"] == "/companies"
    client.post("/logout")
    evil = client.post("/login", data={"email": "bob@example.com", "password": PASSWORD,
                                       "next": "https://evil.example/"})
    assert evil.headers["Location"] == "/"


def test_inactive_users_cannot_sign_in(app, client, users):
    with app.app_context():
        db.session.get(User, users["bob"]).is_active = False
        db.session.commit()
    assert client.post("/login", data={"email": "bob@example.com", "password": PASSWORD}).status_code == 422


def test_anonymous_htmx_request_gets_hx_redirect_not_302(client):
    response = client.get("/companies", htmx={"current_url": "http://localhost/companies?q=x"})
    assert response.status_code == 401
    assert response.headers["HX-Redirect"] == "/login?next=/companies"


def test_first_admin_is_created_once_with_a_generated_password(app_ctx):
    from portal.services.bootstrap import ensure_first_admin

    user, generated = ensure_first_admin("root@example.com", None)
    assert user.is_admin and user.erp_licence and generated and len(generated) >= 12
    assert user.check_password(generated)
    again, none = ensure_first_admin("other@example.com", "whatever-password")
    assert again is None and none is None


def test_create_user_command(app, users):
    runner = app.test_cli_runner()
    result = runner.invoke(args=["create-user", "--email", "dave@example.com", "--licence",
                                 "--password", "a-very-long-password"])
    assert result.exit_code == 0, result.output
    short = runner.invoke(args=["create-user", "--email", "eve@example.com", "--password", "short"])
    assert short.exit_code != 0 and "at least 12 characters" in short.output
    with app.app_context():
        dave = db.session.scalar(select(User).where(User.email == "dave@example.com"))
        assert dave.erp_licence and not dave.is_admin


def test_error_pages_leak_nothing(app, admin_client):
    @app.route("/boom")
    def boom():
        raise RuntimeError("secret internals")

    response = admin_client.get("/boom")
    assert response.status_code == 500
    assert "secret internals" not in response.get_data(as_text=True)
    htmx = admin_client.get("/boom", htmx=True)
    assert htmx.status_code == 500 and "Something went wrong" in htmx.headers["HX-Trigger"]
    assert admin_client.get("/no-such-page").status_code == 404


def test_init_says_whom_to_sign_in_as_when_the_password_is_preset(tmp_path, app_config):
    from portal import create_app

    app = create_app({**app_config, "SQLALCHEMY_DATABASE_URI": f"sqlite:///{tmp_path / 'fresh.db'}",
                      "ADMIN_EMAIL": "boss@example.com", "ADMIN_PASSWORD": PASSWORD}, environ={})
    runner = app.test_cli_runner()
    first = runner.invoke(args=["init"])
    assert first.exit_code == 0, first.output
    assert ("First admin created: sign in as boss@example.com with the password set in PORTAL_ADMIN_PASSWORD."
            in first.output) and PASSWORD not in first.output
    again = runner.invoke(args=["init"])
    assert again.exit_code == 0 and "First admin created" not in again.output and "Database ready." in again.output
    with app.app_context():
        db.engine.dispose()
