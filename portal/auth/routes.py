"""Login, logout and the app-wide rule that every page but login needs a signed-in user."""

from __future__ import annotations

from urllib.parse import urlsplit

from flask import abort, flash, g, redirect, render_template, request, session, url_for
from sqlalchemy import func, select

from portal.auth import bp
from portal.auth.forms import LoginForm
from portal.extensions import db
from portal.htmx import hx_redirect, is_htmx
from portal.models import User
from portal.services import audit

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
    user_id = session.get("user_id")
    g.user = db.session.get(User, user_id) if user_id else None
    if g.user is not None and not g.user.is_active:
        session.clear()
        g.user = None
    if g.user is None and request.endpoint not in PUBLIC_ENDPOINTS and request.endpoint is not None:
        target = request.full_path if request.method == "GET" else None
        if is_htmx():
            # Never a 302 to htmx: the login page would be swapped into the panel.
            current = request.headers.get("HX-Current-URL", "")
            path = urlsplit(current).path if current else None
            return hx_redirect(url_for("auth.login", next=_safe_next(path)), 401)
        return redirect(url_for("auth.login", next=_safe_next(target.rstrip("?") if target else None)))


@bp.route("/login", methods=["GET", "POST"])
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
            session.clear()
            session["user_id"] = user.id
            session.permanent = True
            audit.record("auth.login", user, actor=user, request_id=g.request_id, ip=request.remote_addr or "")
            db.session.commit()
            return redirect(_safe_next(form.next.data) or url_for("crm.home"))
        audit.record("auth.login_failed", object_type="user", object_repr=email[:254], actor=email,
                     request_id=g.request_id, ip=request.remote_addr or "")
        db.session.commit()
        # One message for every failure: no hint whether the e-mail exists.
        form.password.errors = ["Invalid e-mail or password."]
        return render_template("auth/login.html", form=form), 422
    status = 422 if request.method == "POST" else 200
    return render_template("auth/login.html", form=form), status


@bp.route("/logout", methods=["POST"])
def logout():
    if g.user is None:
        abort(401)
    audit.record("auth.logout", g.user, actor=g.user, request_id=g.request_id, ip=request.remote_addr or "")
    db.session.commit()
    session.clear()
    flash("You are signed out.", "info")
    return redirect(url_for("auth.login"))
