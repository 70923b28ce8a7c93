"""Reading a connector's answer: the JSON document checked (an object with a boolean ``IsOk``), an ``IsOk: false``
turned into a :class:`ConnectorError`, and the successful :class:`Reply` (its ``State: Warning`` recorded)."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any

from portal.connectors.client.errors import BODY_SNIPPET, ConnectorError, _describe_remote_body, _truncate
from portal.connectors.protocol import State

log = logging.getLogger("portal.connectors.client")  # the one logger of the whole client (as before the split)

DEFAULT_WARNING = "The connector reported a warning: the operation was done, but not completely."


@dataclass
class Reply:
    """A successful answer (``IsOk: true``); ``data`` is the whole response document."""

    method: str
    data: dict

    @property
    def state(self) -> str:
        state = self.data.get("State")
        return state if isinstance(state, str) and state else State.OK.value

    @property
    def user_explanation(self) -> str:
        return str(self.data.get("UserExplanation") or "")

    @property
    def tech_explanation(self) -> str:
        return str(self.data.get("TechExplanation") or "")

    @property
    def warning(self) -> str | None:
        """What to show the user when the connector answered ``State: Warning``; None otherwise."""
        if self.state != State.WARNING.value:
            return None
        return self.user_explanation or DEFAULT_WARNING

    def __getitem__(self, key: str) -> Any:
        return self.data[key]

    def get(self, key: str, default: Any = None) -> Any:
        return self.data.get(key, default)


def _reject_constant(name: str):
    raise ValueError(f"{name} is not valid JSON")


class AnswerReading:
    """Part of :class:`~portal.connectors.client.connector_client.ConnectorClient`: its answer parsing (uses the
    client's ``warnings``, ``_where`` and ``_bad``)."""

    def _reply(self, method: str, doc: dict) -> Reply:
        if doc["IsOk"] is not True:
            code = doc.get("ErrorCode")
            code = code if isinstance(code, str) else ""
            user = doc.get("UserExplanation")
            user = user if isinstance(user, str) and user.strip() else "The connector reported an error."
            tech = doc.get("TechExplanation")
            tech = tech if isinstance(tech, str) else ""
            raise ConnectorError(user, tech_message=f"{method}: {tech}" if tech else f"{method}: {code or 'error'}",
                                 error_code=code, transient=False, method=method)
        reply = Reply(method, doc)
        warning = reply.warning
        if warning is not None:
            self.warnings.append((method, warning))
            log.warning("connector %s %s answered with a warning: %s %s", self._where(), method, warning,
                        _truncate(reply.tech_explanation, BODY_SNIPPET))
        return reply

    def _parse(self, method: str, raw: bytes) -> dict:
        try:
            doc = json.loads(raw, parse_constant=_reject_constant)
        except (ValueError, RecursionError) as exc:
            raise self._bad(method, "The connector's answer is not valid JSON.", f"{exc}; {_describe_remote_body(raw)}")
        if not isinstance(doc, dict):
            raise self._bad(method, "The connector's answer is not a JSON object.",
                            f"got {type(doc).__name__}; {_describe_remote_body(raw)}")
        if not isinstance(doc.get("IsOk"), bool):
            raise self._bad(method, "The connector's answer has no IsOk member.",
                            f"IsOk is {doc.get('IsOk')!r}; {_describe_remote_body(raw)}")
        return doc
