"""Members of a protocol request read and checked: a GUID, a list of strings, ``Limit``, and the paging cursor
of GetActorsByTimestamp (opaque to the caller: actor type, LastModified and ErpKey of the last actor given)."""

from __future__ import annotations

import base64
import json
import uuid

from portal.connectors.service import ProtocolError


def _normalize_guid(value) -> str | None:
    try:
        return str(uuid.UUID(str(value)))
    except (ValueError, TypeError, AttributeError):
        return None


def _string_list(body: dict, member: str) -> list[str]:
    value = body.get(member)
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise ProtocolError(f"{member} must be a list of strings.", error_code="BAD_REQUEST")
    return value


def _limit(body: dict) -> int | None:
    value = body.get("Limit")
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ProtocolError("Limit must be a whole number of at least 0.", error_code="BAD_REQUEST")
    return value or None


def _encode_cursor(actor_type: str, micros: int, erp_key: str) -> str:
    raw = json.dumps([actor_type, micros, erp_key], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_cursor(cursor: str, actor_type: str) -> tuple[int, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        kind, micros, erp_key = json.loads(raw)
        if kind != actor_type or not isinstance(micros, int) or not isinstance(erp_key, str):
            raise ValueError
    except (ValueError, TypeError):
        raise ProtocolError("The paging cursor is not valid for this request.", f"Cursor {cursor!r}",
                            "BAD_CURSOR") from None
    return micros, erp_key
