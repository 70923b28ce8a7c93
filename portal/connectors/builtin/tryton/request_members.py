"""Members of a protocol request read and checked (ConnectionGuid, ActorType, FieldKeys, Limit, ErpKeys as
Tryton ids), and ids cut into chunks for Tryton's read calls."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping

from portal.connectors.builtin.tryton.catalogue import ACTOR_TYPES, CHUNK, FIELD_INDEX
from portal.connectors.protocol import UNKNOWN_CONNECTION_ID
from portal.connectors.service import ProtocolError


def _chunks(items: list, size: int = CHUNK) -> Iterable[list]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


def _int_keys(keys) -> list[int]:
    out = []
    for key in keys or []:
        try:
            number = int(str(key).strip())
        except (TypeError, ValueError):
            continue
        if number > 0:
            out.append(number)
    return list(dict.fromkeys(out))


def _guid(body: Mapping) -> str:
    raw = body.get("ConnectionGuid")
    try:
        return str(uuid.UUID(str(raw)))
    except (TypeError, ValueError):
        raise ProtocolError("ConnectionGuid is missing or not a UUID.", f"got {raw!r}",
                            UNKNOWN_CONNECTION_ID) from None


def _actor_type(body: Mapping, key: str = "ActorType") -> str:
    actor_type = body.get(key)
    if actor_type not in ACTOR_TYPES:
        raise ProtocolError(f"The Tryton connector does not support the actor type {actor_type!r}.",
                            f"supported: {', '.join(ACTOR_TYPES)}", "UNSUPPORTED_ACTOR_TYPE")
    return actor_type


def _field_keys(body: Mapping, actor_type: str) -> list[str]:
    keys = body.get("FieldKeys") or []
    known = FIELD_INDEX[actor_type]
    return [k for k in keys if k in known] if keys else list(known)


def _limit(body: Mapping) -> int | None:
    limit = body.get("Limit")
    if limit in (None, "", 0):
        return None
    try:
        limit = int(limit)
    except (TypeError, ValueError):
        raise ProtocolError("Limit must be a whole number.", error_code="INVALID_VALUE") from None
    if limit < 0:
        raise ProtocolError("Limit must not be negative.", error_code="INVALID_VALUE")
    return limit
