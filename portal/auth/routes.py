"""Login, logout, the account page and the app-wide rule that every page but login needs a signed-in user.

Sessions are revocable (portal/auth/sessions.py): each request checks the session's epoch against the user's and
its absolute lifetime. Sign-in is rate limited per account+address and per address, and its failures are audited
at most once a minute per account+address (portal/security/limits.py).
"""

from __future__ import annotations

from datetime import UTC, datetime
from urllib.parse import urlsplit

from flask import abort, flash, g, redirect, render_template, request, session, url_for
from flask_limiter import RateLimitExceeded
from sqlalchemy import func, select

from portal import i18n
from portal.auth import bp, sessions
from portal.auth.forms import ApiTokenForm, EmptyForm, LanguageForm, LoginForm, PasswordChangeForm
from portal.extensions import db
from portal.htmx import hx_redirect, is_htmx, redirect_for, wants_partial
from portal.models import User
from portal.security import limits
from portal.services import audit, multilang
from portal.services.users import UserError, change_own_password, end_sessions
from portal.web import apply_form_errors, audit_ctx


def token_context(form=None, secret: str | None = None, made=None) -> dict:
    """What the account page's API tokens section shows (templates/auth/_api_tokens.html)."""
    from portal.api import tokens

    user = g.get("user")
    may = tokens.may_hold_tokens(user)
    return {"token_form": form or (ApiTokenForm(formdata=None) if may else None), "token_action_form": EmptyForm(),
            "api_tokens": tokens.of_user(user) if user is not None else [], "may_hold_tokens": may,
            "new_secret": secret, "new_token": made}

PUBLIC_ENDPOINTS = {"auth.login", "static"}
# A constant-time-ish answer for unknown e-mails: check against a real hash so timing does not tell.
_DUMMY = User(password_hash="scrypt:32768:8:1$abcdefghijklmnop$" + "0" * 128)


def _safe_next(target: str | None) -> str | None:
    if not target:
        return None
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not target.startswith("/") or target.startswith("//"):
        return None
    return target


@bp.before_app_request
def load_user():
    if request.blueprint == "api":
        # The automation API never reads the session cookie: its own hook signs the token's user in
        # (portal/api/auth.py), and a browser's session gets a 401 there, not a redirect.
        g.user = None
        return None
    user_id = session.get("user_id")
    user = db.session.get(User, user_id) if user_id else None
    ended = user_id is not None and not sessions.valid(user)
    if ended:
        # Signed out elsewhere, password/role/licence changed, deactivated, or past its absolute lifetime.
        session.clear()
        user = None
    g.user = user
    if g.user is None and request.endpoint not in PUBLIC_ENDPOINTS and request.endpoint is not None:
        if ended:
            flash("Your session has ended. Please sign in again.", "info")
        target = request.full_path if request.method == "GET" else None
        if is_htmx():
            # Never a 302 to htmx: the login page would be swapped into the panel.
            current = request.headers.get("HX-Current-URL", "")
            path = urlsplit(current).path if current else None
            return hx_redirect(url_for("auth.login", next=_safe_next(path)), 401)
        return redirect(url_for("auth.login", next=_safe_next(target.rstrip("?") if target else None)))


def _ip() -> str:
    return request.remote_addr or ""


@bp.errorhandler(RateLimitExceeded)
def _too_many(error: RateLimitExceeded):
    """Past a sign-in limit: the sign-in page again, with the wait above the form (429, Retry-After)."""
    seconds = limits.retry_after()
    message = limits.too_many_message(error, seconds)
    if request.endpoint != "auth.login" or is_htmx():
        from portal.errors import render_error

        body, status = render_error(429, message)
        return body, status, {"Retry-After": str(seconds)}
    return render_template("auth/login.html", form=LoginForm(), notice=message), 429, {"Retry-After": str(seconds)}


@bp.route("/login", methods=["GET", "POST"])
@limits.login_per_account
@limits.login_per_address
def login():
    form = LoginForm()
    if request.method == "GET":
        form.next.data = _safe_next(request.args.get("next"))
    if form.validate_on_submit():
        email = form.email.data.strip().lower()
        user = db.session.scalar(select(User).where(func.lower(User.email) == email))
        candidate = user if user is not None else _DUMMY
        password_ok = candidate.check_password(form.password.data)
        if user is not None and user.is_active and password_ok:
            sessions.start(user)
            audit.record("auth.login", user, actor=user, request_id=g.request_id, ip=_ip())
            db.session.commit()
            return redirect(_safe_next(form.next.data) or url_for("crm.home"))
        # At most one audit row per account+address a minute: an anonymous visitor cannot fill the audit table.
        attempts = limits.audit_failed_login(email[:254])
        if attempts:
            audit.record("auth.login_failed", object_type="user", object_repr=email[:254], actor=email[:254],
                         after={"attempts": attempts}, request_id=g.request_id, ip=_ip())
            db.session.commit()
        # One message for every failure: no hint whether the e-mail exists.
        form.password.errors = ["Invalid e-mail or password."]
        return render_template("auth/login.html", form=form), 422
    status = 422 if request.method == "POST" else 200
    return render_template("auth/login.html", form=form), status


@bp.route("/logout", methods=["POST"])
def logout():
    """Sign out — of every session of this user: the epoch moves, so a copy of this cookie is dead too."""
    if g.user is None:
        abort(401)
    g.user.end_sessions()
    audit.record("auth.logout", g.user, after={"sessions": "ended"}, actor=g.user, request_id=g.request_id,
                 ip=_ip())
    db.session.commit()
    session.clear()
    flash("You are signed out.", "info")
    return redirect(url_for("auth.login"))


# ---------------------------------------------------------------------------------------------------------
# The user's own account: sessions, password and the language of connector texts


def _timestamp(value) -> datetime | None:
    try:
        return datetime.fromtimestamp(int(value), UTC).replace(tzinfo=None)
    except (TypeError, ValueError, OverflowError):
        return None


def _language_form() -> LanguageForm:
    """The user's current choice ("" = from the browser), not bound to the request's form data."""
    return LanguageForm(formdata=None, data={"language": g.user.language or ""})


def _render_account(password_form: PasswordChangeForm | None = None, status: int = 200,
                    language_form: LanguageForm | None = None):
    login_at = session.get("login_at")
    browser = i18n.browser_language()
    context = {
        "password_form": password_form or PasswordChangeForm(formdata=None),
        "language_form": language_form or _language_form(),
        "browser_language": dict(multilang.LANGUAGES).get(browser, browser),
        "signed_in_at": _timestamp(login_at),
        "session_ends_at": _timestamp(sessions.ends_at(int(login_at)) if login_at else None),
        "max_hours": sessions.max_age() // 3600,
        **token_context(**(g.pop("token_override", None) or {})),
    }
    if wants_partial() and request.method == "POST":
        partial = "auth/_language_form.html" if language_form is not None else "auth/_password_form.html"
        return render_template(partial, **context), status
    return render_template("auth/account.html", **context), status


@bp.route("/account", methods=["GET", "POST"])
def account():
    """The account page; a POST sets the language connector texts are shown in ("" = from the browser)."""
    if request.method == "GET":
        return _render_account(PasswordChangeForm())
    form = LanguageForm()
    if not form.validate_on_submit():
        return _render_account(status=422, language_form=form)
    language = form.language.data or None
    if language != g.user.language:
        audit.record("user.language", g.user, before={"language": g.user.language}, after={"language": language},
                     **audit_ctx())
        g.user.language = language
        db.session.commit()
        i18n.forget()
    chosen = dict(multilang.LANGUAGES).get(language) if language else None
    flash(f"ERP texts are now shown in {chosen}." if chosen else
          "ERP texts are now shown in your browser's language.", "success")
    return redirect_for(url_for("auth.account"))


@bp.route("/account/password", methods=["POST"])
@limits.password_change
def change_password():
    form = PasswordChangeForm()
    if form.validate_on_submit():
        try:
            change_own_password(g.user, current=form.current_password.data, new=form.new_password.data,
                                **audit_ctx())
        except UserError as exc:
            db.session.rollback()
            apply_form_errors(form, {exc.field or "": str(exc)})
        else:
            # Every other session of this user is over; this one carries on in the new epoch.
            sessions.stamp(g.user)
            flash("Your password is changed. You were signed out everywhere else.", "success")
            return redirect_for(url_for("auth.account"))
    return _render_account(form, 422)


@bp.route("/account/sign-out-everywhere", methods=["POST"])
def sign_out_everywhere():
    """End every session of this user in other browsers and devices; this one stays signed in. (Sign out, by
    contrast, ends them all, this one included.)"""
    end_sessions(g.user, **audit_ctx())
    sessions.stamp(g.user)
    flash("You were signed out in every other browser and device.", "success")
    return redirect_for(url_for("auth.account"))


from portal.auth import routes_tokens  # noqa: E402,F401
