"""Which language the current request reads connector texts in (the web layer's half of portal/services/multilang).

The signed-in user's choice on the Account page (``User.language``) wins; without one ("From the browser") the first
supported language of the browser's Accept-Language; else US. Outside a request (the scheduler, e-mails) it is US.
"""

from __future__ import annotations

from flask import g, has_request_context, request
from markupsafe import Markup

from portal.services import multilang


def browser_language() -> str:
    """The culture code of the request's Accept-Language (best quality first), US when none is supported."""
    tags = [tag for tag, quality in request.accept_languages if quality > 0]
    return multilang.from_browser(tags) or multilang.DEFAULT


def current_language() -> str:
    """The culture code connector texts are shown in for this request (cached for the request)."""
    if not has_request_context():
        return multilang.DEFAULT
    cached = g.get("language")
    if cached:
        return cached
    user = g.get("user")
    chosen = getattr(user, "language", None)
    language = chosen if chosen in multilang.SUPPORTED else browser_language()
    g.language = language
    return language


def localize(text, language: str | None = None):
    """A connector text (or a message that embeds one) in the request's language; the ``lang`` template filter.
    Anything that is not a plain string (None, numbers, Markup already built) comes back as it is."""
    if not isinstance(text, str) or isinstance(text, Markup):
        return text
    return multilang.localize(text, language or current_language())


def forget() -> None:
    """Drop the cached language (after the user changed it in this request)."""
    g.pop("language", None)
