"""The admin audit log: who changed what, when, before and after — with secrets masked."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from portal.extensions import db
from portal.models import AuditEvent
from portal.security.crypto import SECRET_PLACEHOLDER

SECRET_KEYS = ("password", "secret", "token", "apikey", "api_key")


def mask(values: dict | None, secret_keys: set[str] | frozenset[str] = frozenset()) -> dict | None:
    """Copy of ``values`` with secret entries replaced by the placeholder (nested dicts too)."""
    if values is None:
        return None
    masked = {}
    for key, value in values.items():
        lowered = str(key).lower()
        if key in secret_keys or any(word in lowered for word in SECRET_KEYS):
            masked[key] = SECRET_PLACEHOLDER if value not in (None, "") else value
        elif isinstance(value, dict):
            masked[key] = mask(value, secret_keys)
        else:
            masked[key] = value
    return masked


def record(action: str, obj=None, *, before: dict | None = None, after: dict | None = None,
           object_type: str | None = None, object_id: int | None = None, object_repr: str | None = None,
           actor=None, secret_keys: set[str] | frozenset[str] = frozenset(), request_id: str = "",
           ip: str = "") -> AuditEvent:
    """Add an audit row to the current session; the caller commits it with the change it describes."""
    if before is not None and after is not None:
        changed = {k for k in set(before) | set(after) if before.get(k) != after.get(k)}
        before = {k: before.get(k) for k in sorted(changed)}
        after = {k: after.get(k) for k in sorted(changed)}
    event = AuditEvent(
        action=action,
        object_type=object_type or (type(obj).__name__.lower() if obj is not None else ""),
        object_id=object_id if object_id is not None else getattr(obj, "id", None),
        object_repr=(object_repr or (getattr(obj, "name", None) or str(obj or "")))[:254],
        before=mask(before, secret_keys),
        after=mask(after, secret_keys),
        actor_id=getattr(actor, "id", None),
        actor_label=getattr(actor, "email", None) or (actor if isinstance(actor, str) else "system"),
        request_id=request_id,
        ip=ip,
    )
    db.session.add(event)
    return event


# ------------------------------------------------------------------------------------------ reading the log


@dataclass(frozen=True)
class Shown:
    """One side of a changed entry as the audit page prints it: a text, or items (a list or a mapping)."""

    text: str = ""
    items: tuple[str, ...] = ()
    is_list: bool = False
    muted: bool = False  # "blank", "not set": words of the log, not a value


@dataclass(frozen=True)
class DiffLine:
    """``key: before → after``; a side is None when the event has no such side (a creation, a deletion)."""

    key: str
    before: Shown | None
    after: Shown | None


def _text(value: object) -> str:
    if value is None or value == "":
        return "blank"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, Mapping):
        return ", ".join(f"{k}: {_text(v)}" for k, v in value.items()) or "none"
    if isinstance(value, list | tuple):
        return ", ".join(_text(v) for v in value) or "none"
    return str(value)


def _shown(value: object) -> Shown:
    if isinstance(value, Mapping):
        return Shown(items=tuple(f"{k}: {_text(v)}" for k, v in value.items()), is_list=True)
    if isinstance(value, list | tuple):
        return Shown(items=tuple(_text(v) for v in value), is_list=True)
    return Shown(text=_text(value), muted=value is None or value == "")


def diff(before: Mapping | None, after: Mapping | None) -> list[DiffLine]:
    """An event's before and after as lines people read (the page showed raw JSON with ``\\u2022`` escapes).

    Values are plain text (unicode as is; the template escapes it), lists and mappings item by item; a key only
    one side has reads as "not set" on the other.
    """
    if before is None and after is None:
        return []
    keys = list(dict.fromkeys([*(before or {}), *(after or {})]))
    not_set = Shown(text="not set", muted=True)
    return [DiffLine(str(key),
                     None if before is None else (_shown(before[key]) if key in before else not_set),
                     None if after is None else (_shown(after[key]) if key in after else not_set))
            for key in keys]

