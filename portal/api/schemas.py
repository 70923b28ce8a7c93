"""Request and response bodies of the API (marshmallow): validation of what comes in, and the OpenAPI components
(portal/api/openapi.py) — one definition for both."""

from __future__ import annotations

from marshmallow import Schema, ValidationError, fields, validate, validates_schema

from portal.models import CrmType
from portal.security.params import MAX_INT

MAX_KEYS = 1000  # record ids or ERP keys in one resync request
CRM_TYPES = [t.value for t in CrmType]
ID = {"strict": True, "validate": validate.Range(min=1, max=MAX_INT)}


class Error(Schema):
    error = fields.String(required=True, metadata={"description": "a short code: unauthorized, forbidden …"})
    message = fields.String(required=True)
    details = fields.Dict(keys=fields.String(), values=fields.String())


class Health(Schema):
    state = fields.String(required=True, metadata={"description": "healthy, degraded, failing, paused, breaker_open"})
    reason = fields.String(required=True)
    running = fields.Boolean(required=True)
    open_issues = fields.Integer(required=True)
    unsynced = fields.Integer(required=True, metadata={"description": "CRM edits not synced yet"})
    last_run_id = fields.Integer(allow_none=True)
    last_run_status = fields.String(allow_none=True)
    last_success_at = fields.DateTime(allow_none=True)


class ConnectionOut(Schema):
    id = fields.Integer(required=True)
    name = fields.String(required=True)
    active = fields.Boolean(required=True)
    can_connect = fields.Boolean(required=True)
    can_create = fields.Boolean(required=True)
    health = fields.Nested(Health, required=True)


class ConnectionList(Schema):
    connections = fields.List(fields.Nested(ConnectionOut), required=True)


class SyncRequest(Schema):
    no_blank = fields.Boolean(load_default=False, metadata={"description": "never overwrite a value with a blank"})


class ResyncRequest(Schema):
    """ForceResync (``crm_type`` + ``crm_ids``) or ForceResyncExternal (``erp_actor_type`` + ``erp_keys``); neither:
    the whole connection, like Settings → Resync."""

    crm_type = fields.String(validate=validate.OneOf(CRM_TYPES))
    crm_ids = fields.List(fields.Integer(**ID), validate=validate.Length(min=1, max=MAX_KEYS))
    erp_actor_type = fields.String(validate=validate.Length(min=1, max=16))
    erp_keys = fields.List(fields.String(validate=validate.Length(min=1, max=255)),
                           validate=validate.Length(min=1, max=MAX_KEYS))
    direction = fields.String(validate=validate.OneOf(["from_crm", "from_erp"]), metadata={
        "description": "from_crm (CRM → ERP) or from_erp (ERP → CRM); default from_crm for crm_ids and the whole "
                       "connection, from_erp for erp_keys"})
    no_blank = fields.Boolean(load_default=False)

    @validates_schema
    def _one_kind(self, data, **_kwargs):
        by_crm = "crm_ids" in data or "crm_type" in data
        by_erp = "erp_keys" in data or "erp_actor_type" in data
        if by_crm and by_erp:
            raise ValidationError("Give either crm_type and crm_ids or erp_actor_type and erp_keys, not both.")
        if by_crm and not ("crm_ids" in data and "crm_type" in data):
            raise ValidationError("crm_ids need crm_type (and crm_type needs crm_ids).")
        if by_erp and not ("erp_keys" in data and "erp_actor_type" in data):
            raise ValidationError("erp_keys need erp_actor_type (and erp_actor_type needs erp_keys).")


class RunQueued(Schema):
    run_id = fields.Integer(required=True)
    url = fields.String(required=True, metadata={"description": "GET it for the run's status"})
    records = fields.Integer(metadata={"description": "linked records a record resync covers"})


class LinkRequest(Schema):
    connection_id = fields.Integer(required=True, **ID)
    erp_key = fields.String(required=True, validate=validate.Length(min=1, max=255))
    actor_type = fields.String(required=True, validate=validate.Length(min=1, max=16))
    picks = fields.Dict(keys=fields.String(validate=validate.Length(max=120)),
                        values=fields.String(validate=validate.OneOf(["crm", "erp"])), metadata={
        "description": "ERP field key → crm|erp for fields that differ; unpicked ones follow the conflict rule"})
    answers = fields.Dict(keys=fields.String(validate=validate.Length(max=120)), metadata={
        "description": "values of the actor type's ask-user fields (ERP field key → value)"})


class LinkOut(Schema):
    connection_id = fields.Integer(required=True)
    crm_type = fields.String(required=True)
    crm_id = fields.Integer(required=True)
    actor_type = fields.String(required=True)
    erp_key = fields.String(required=True)
    already = fields.Boolean(required=True, metadata={"description": "the record was linked to it already"})
    to_erp = fields.List(fields.String())
    to_crm = fields.List(fields.String())
    warnings = fields.List(fields.String())


class RunOut(Schema):
    id = fields.Integer(required=True)
    connection_id = fields.Integer(required=True)
    kind = fields.String(required=True)
    trigger = fields.String(required=True)
    status = fields.String(required=True)
    message = fields.String()
    error = fields.String()
    counts = fields.Dict(keys=fields.String())
    options = fields.Dict(keys=fields.String())
    progress_done = fields.Integer()
    progress_total = fields.Integer()
    requested_by = fields.String()
    created_at = fields.DateTime(allow_none=True)
    started_at = fields.DateTime(allow_none=True)
    finished_at = fields.DateTime(allow_none=True)


class RunList(Schema):
    runs = fields.List(fields.Nested(RunOut), required=True)


class RunsQuery(Schema):
    connection_id = fields.Integer(strict=False, validate=validate.Range(min=1, max=MAX_INT))
    limit = fields.Integer(load_default=20, strict=False, validate=validate.Range(min=1, max=200))


class ChangeOut(Schema):
    id = fields.Integer(required=True)
    run_id = fields.Integer(allow_none=True)
    connection_id = fields.Integer(required=True)
    crm_type = fields.String(required=True)
    crm_id = fields.Integer(required=True)
    erp_actor_type = fields.String()
    erp_key = fields.String()
    direction = fields.String(required=True, metadata={"description": "to_crm, to_erp or error"})
    erp_field_key = fields.String()
    crm_field_key = fields.String()
    old_value = fields.String(allow_none=True)
    new_value = fields.String(allow_none=True)
    conflict = fields.Boolean()
    other_value = fields.String(allow_none=True)
    rule = fields.String()
    at = fields.DateTime()


class ChangeList(Schema):
    changes = fields.List(fields.Nested(ChangeOut), required=True)


class ChangesQuery(Schema):
    run_id = fields.Integer(strict=False, validate=validate.Range(min=1, max=MAX_INT))
    crm_type = fields.String(validate=validate.OneOf(CRM_TYPES))
    crm_id = fields.Integer(strict=False, validate=validate.Range(min=1, max=MAX_INT))
    limit = fields.Integer(load_default=100, strict=False, validate=validate.Range(min=1, max=1000))


class UnlinkQuery(Schema):
    connection_id = fields.Integer(required=True, strict=False, validate=validate.Range(min=1, max=MAX_INT))
