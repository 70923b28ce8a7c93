"""What people call an ERP actor type on one connection: "Vendor" where the protocol says Supplier (issue #17).

SuperOffice shows connector-defined names for actor types (superoffice-erp-spec.md §2.3: Company → Customer /
Supplier, "connector-defined labels, e.g. Vendor"). The fixed connector protocol cannot carry one:
``GetSupportedActorTypes`` answers only the constants Customer, Supplier, Partner, Person and Project. So the name
is the admin's, set per connection and actor type on the actor type's mapping tab (``ActorTypeConfig.label``;
empty = the standard name), optionally multi-language in SuperOffice's ``US:"Vendor";NO:"Leverandør"`` form, picked
in the reader's language like every connector text (portal/services/multilang.py). See docs/decisions.md.

The constant stays what is stored, sent to the connector and put in URLs and form values; only what is *shown*
goes through :func:`actor_label` (a template global too).
"""

from __future__ import annotations

import re
import unicodedata

from sqlalchemy import select

from portal.extensions import db
from portal.models import ActorTypeConfig, Connection
from portal.services import audit, multilang
from portal.services.connectors import ServiceError

MAX_LENGTH = 120  # ActorTypeConfig.label's column: the stored text, languages and quotes included
_LOOKS_MULTILANG = re.compile(r'[A-Z]{2}:"')  # begins like US:"…" — then all of it must be in that form
_CACHE = "actor_labels"  # flask.g: {connection id: {actor type: stored label}} for the current app context


class LabelError(ServiceError):
    """A refused label (``field`` is ``label``)."""

    def __init__(self, message: str):
        super().__init__(message, "label", [message])


# ============================================================================================ reading


def _language(language: str | None) -> str:
    if language:
        return language
    from portal import i18n  # the web layer's choice (US outside a request)

    return i18n.current_language()


def shown(stored: str | None, actor_type: str, language: str | None = None) -> str:
    """The label ``stored`` for ``actor_type`` in ``language`` (default: the reader's): its text in that language
    when multi-language, the standard name when empty or when no language has a text."""
    text = (stored or "").strip()
    if not text:
        return actor_type
    picked = multilang.pick(text, _language(language))
    return (picked or "").strip() or actor_type


def _stored_labels(connection_id: int) -> dict[str, str | None]:
    """{actor type: stored label} of a connection, read once per request (outside one, every time: a worker's
    long-lived app context must not keep an old label)."""
    from flask import g, has_app_context, has_request_context

    if not has_app_context():
        return {}

    def read() -> dict[str, str | None]:
        return dict(db.session.execute(select(ActorTypeConfig.erp_actor_type, ActorTypeConfig.label)
                                       .where(ActorTypeConfig.connection_id == connection_id)).all())

    if not has_request_context():
        return read()
    cache = g.setdefault(_CACHE, {})
    if connection_id not in cache:
        cache[connection_id] = read()
    return cache[connection_id]


def forget() -> None:
    """Drop the labels read in this request (after one was changed)."""
    from flask import g, has_request_context

    if has_request_context():
        g.pop(_CACHE, None)


def actor_label(source, actor_type: str | None = None, language: str | None = None) -> str:
    """The name people see for an ERP actor type.

    ``source`` says which connection: an ``ActorTypeConfig`` (its own type unless ``actor_type`` names another),
    a ``Connection``, a connection id, or anything with ``connection_id`` (and ``erp_actor_type`` when
    ``actor_type`` is not given) — a ``Link``, a ``SyncChange``, a sync issue. Without a connection (None) or for
    a type the connection does not have, the standard name.
    """
    if isinstance(source, ActorTypeConfig):
        if actor_type in (None, "", source.erp_actor_type):
            return shown(source.label, source.erp_actor_type, language)
        source = source.connection
    if actor_type in (None, ""):
        actor_type = getattr(source, "erp_actor_type", None) or ""
    actor_type = str(actor_type)
    if not actor_type:
        return ""
    if isinstance(source, Connection):
        config = source.actor_type(actor_type)
        return shown(config.label if config is not None else None, actor_type, language)
    connection_id = source if isinstance(source, int) and not isinstance(source, bool) else \
        getattr(source, "connection_id", None)
    if not isinstance(connection_id, int):
        return actor_type
    return shown(_stored_labels(connection_id).get(actor_type), actor_type, language)


def has_label(config: ActorTypeConfig) -> bool:
    return bool((config.label or "").strip())


# ============================================================================================ setting


def _clean(text: str | None) -> str:
    return (text or "").strip()


def validate(config: ActorTypeConfig, text: str | None) -> str:
    """The label to store for ``text`` ("" = the standard name), or LabelError with the reason."""
    label = _clean(text)
    if not label:
        return ""
    if len(label) > MAX_LENGTH:
        raise LabelError(f"The name can be at most {MAX_LENGTH} characters (this one has {len(label)}).")
    if any(unicodedata.category(ch) in ("Cc", "Cf") for ch in label):
        raise LabelError("The name cannot contain line breaks, tabs or other control characters.")
    texts = multilang.parse(label)
    if texts is None and _LOOKS_MULTILANG.match(label):
        raise LabelError('Write a name in several languages as US:"Vendor";NO:"Leverandør" '
                         '(a double quote inside a name is written twice).')
    if texts is not None and not any(value.strip() for value in texts.values()):
        raise LabelError("Give the name in at least one language, or leave it empty for the standard name.")
    # Two actor types of one connection shown under the same name could not be told apart on the ERP tab.
    mine = {shown(label, config.erp_actor_type, code).casefold() for code in _languages_of(label)}
    for other in config.connection.actor_types:
        if other is config or other.erp_actor_type == config.erp_actor_type:
            continue
        theirs = {shown(other.label, other.erp_actor_type, code).casefold()
                  for code in _languages_of(label) | _languages_of(other.label)}
        if mine & theirs:
            raise LabelError(f"{other.erp_actor_type} is already shown as "
                             f"“{shown(other.label, other.erp_actor_type, 'US')}” on this connection; "
                             "choose a name users can tell apart.")
    return label


def _languages_of(text: str | None) -> set[str]:
    texts = multilang.parse((text or "").strip())
    return set(texts) | {multilang.DEFAULT} if texts else {multilang.DEFAULT}


def set_label(config: ActorTypeConfig, text: str | None, *, actor=None, **ctx) -> bool:
    """Store the admin's name for the actor type (audited); returns whether it changed. Raises LabelError."""
    label = validate(config, text)
    before = config.label or ""
    if label == before:
        return False
    config.label = label or None
    audit.record("mapping.actor_label", config, before={"label": before}, after={"label": label},
                 object_type="actor_type_config",
                 object_repr=f"{config.connection.name} / {config.erp_actor_type}", actor=actor, **ctx)
    db.session.commit()
    forget()
    return True


__all__ = ["MAX_LENGTH", "LabelError", "actor_label", "forget", "has_label", "set_label", "shown", "validate"]
