"""The ERP tab's errors: every rule failure raises an :class:`ErpTabError` whose ``message`` can be shown to the user
as is and whose ``status`` is the HTTP status the blueprint (and the API) answers with."""

from __future__ import annotations

from collections.abc import Mapping


class ErpTabError(Exception):
    """A rule refused the action or a connector failed; ``message`` is for the user."""

    status = 400

    def __init__(self, message: str, status: int | None = None):
        super().__init__(message)
        self.message = message
        if status is not None:
            self.status = status


class Refused(ErpTabError):
    """The user may not do this (no licence, outside the scope, no right to connect/create)."""

    status = 403


class NotFound(ErpTabError):
    status = 404


class RuleBroken(ErpTabError):
    """A link rule (one link per record / per actor, contacts under a linked company) refused the action."""

    status = 409


class ConnectorFailed(ErpTabError):
    """The connector could not do what was asked; nothing was stored."""

    status = 502


class StaleComparison(ErpTabError):
    """The CRM record or the ERP actor changed after the comparison was shown."""

    status = 409


class InvalidInput(ErpTabError):
    """Field-level problems (``errors``: form field name or ERP key -> message)."""

    status = 422

    def __init__(self, message: str, errors: Mapping[str, str] | None = None):
        super().__init__(message)
        self.errors = dict(errors or {})
