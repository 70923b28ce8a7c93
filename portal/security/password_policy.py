"""The one password policy of the portal, for every way a password is set.

Used by the user service (Settings → Users, ``flask create-user``, a user changing their own password), by the
first admin from ``PORTAL_ADMIN_PASSWORD`` (refused at start-up, see portal/config.py) and by the generated first
admin password (which must pass it too). Rules, in the order they are checked:

* at least :data:`MIN_LENGTH` (12) and at most :data:`MAX_LENGTH` (200) characters;
* not the user's e-mail address (any letter case);
* not on the common-password list of ``zxcvbn`` (the 30,000 most used passwords of public breaches);
* not easy to guess: ``zxcvbn``'s estimate must reach :data:`MIN_SCORE` (3 of 4, at least 10^8 guesses) — this
  catches the list's variants (``password1234``), keyboard rows, repeats and passwords built from the e-mail or
  name. zxcvbn (MIT, https://github.com/dwolfhub/zxcvbn-python) is pinned in requirements.txt.

No composition rules (digits, capitals): a long passphrase passes, ``Password1!`` does not (NIST SP 800-63B).
"""

from __future__ import annotations

MIN_LENGTH = 12
MAX_LENGTH = 200
MIN_SCORE = 3
# zxcvbn's own input limit: longer passwords are judged on their first ZXCVBN_MAX characters.
ZXCVBN_MAX = 72
# Words anyone would try first against this portal.
SITE_WORDS = ("erp", "sync", "portal", "erpsync", "superoffice", "admin", "administrator")


_COMMON: frozenset[str] | None = None


class WeakPassword(ValueError):
    """The password breaks the policy; the message says why and is shown next to the password field."""


def _common_passwords() -> frozenset[str]:
    global _COMMON
    if _COMMON is None:
        from zxcvbn.frequency_lists import FREQUENCY_LISTS

        _COMMON = frozenset(FREQUENCY_LISTS["passwords"])
    return _COMMON


def problem(password: str | None, *, email: str | None = None, name: str | None = None) -> str | None:
    """Why ``password`` is refused, or None when it passes. ``email``/``name``: the user it is for."""
    password = password or ""
    if len(password) < MIN_LENGTH:
        return f"The password must be at least {MIN_LENGTH} characters."
    if len(password) > MAX_LENGTH:
        return f"The password must be at most {MAX_LENGTH} characters."
    email = (email or "").strip().lower()
    if email and password.strip().lower() == email:
        return "The password must not be the e-mail address."
    if password.lower() in _common_passwords():
        return "This password is on a list of common passwords; choose another one."
    from zxcvbn import zxcvbn

    user_inputs = [*SITE_WORDS]
    if email:
        user_inputs += [email, *email.replace("@", ".").split(".")]
    if name:
        user_inputs += [name.lower(), *name.lower().split()]
    result = zxcvbn(password[:ZXCVBN_MAX], user_inputs=[word for word in user_inputs if word])
    if result["score"] < MIN_SCORE:
        warning = (result.get("feedback") or {}).get("warning") or ""
        detail = f" ({warning.rstrip('.')})" if warning else ""
        return f"This password is too easy to guess{detail}. Use a longer one, e.g. a few unrelated words."
    return None


def check(password: str | None, *, email: str | None = None, name: str | None = None) -> None:
    """Raise :class:`WeakPassword` when ``password`` breaks the policy."""
    message = problem(password, email=email, name=name)
    if message:
        raise WeakPassword(message)


def generate() -> str:
    """A random password that passes the policy (20 URL-safe characters, ~120 bits)."""
    import secrets

    while True:
        password = secrets.token_urlsafe(15)
        if problem(password) is None:
            return password
