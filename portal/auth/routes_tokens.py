"""The account page's API tokens (portal/api/tokens.py): create (the secret shown once), revoke.

Creating answers the tokens section with the secret in it (never a redirect: the secret must not travel in a
URL or a flash cookie); a plain form post gets the whole account page.
"""

from __future__ import annotations

from flask import abort, g, render_template

from portal.auth import bp
from portal.auth.forms import ApiTokenForm, EmptyForm
from portal.extensions import db
from portal.htmx import toast, wants_partial
from portal.web import apply_form_errors, audit_ctx


def _answer(status: int = 200, **context):
    from portal.auth.routes import _render_account, token_context

    if wants_partial():
        return render_template("auth/_api_tokens.html", **token_context(**context)), status
    g.token_override = context
    body, _status = _render_account()
    return body, status


@bp.route("/account/tokens", methods=["POST"])
def token_create():
    from portal.api import tokens

    if not tokens.may_hold_tokens(g.user):
        abort(403)
    form = ApiTokenForm()
    if not form.validate_on_submit():
        return _answer(422, form=form)
    try:
        token, secret = tokens.create(g.user, form.name.data, form.scopes.data, int(form.days.data), **audit_ctx())
    except tokens.TokenError as exc:
        db.session.rollback()
        apply_form_errors(form, {exc.field or "": str(exc)})
        return _answer(422, form=form)
    toast("success", f"Token “{token.name}” created; copy it now.")
    return _answer(201, secret=secret, made=token)


@bp.route("/account/tokens/<int:token_id>/revoke", methods=["POST"])
def token_revoke(token_id: int):
    from portal.api import tokens

    if not EmptyForm().validate_on_submit():
        abort(400)
    token = tokens.revoke(g.user, token_id, **audit_ctx())
    if token is None:  # not one of yours (or gone): nothing to do; the list shows what you have
        toast("warning", "You have no such token.")
    else:
        toast("success", f"Token “{token.name}” revoked.")
    return _answer()
