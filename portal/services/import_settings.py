"""Import from ERP: what an import is asked to do (spec §5.6) and what can be imported.

:class:`ImportSettings` (duplicate rules and actions, list values, persons, phones/e-mails/web sites, a company from
a person's company name) and :class:`ImportRequest` (connection, actor type, selection, settings) are plain JSON
(``SyncRun.options``); ``ImportSettings.validate`` checks them alone, :func:`check_settings` against the
connection's mappings.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Mapping
from dataclasses import dataclass, field

from sqlalchemy import select

from portal.extensions import db
from portal.models import (
    ACTOR_CRM_TYPE,
    ActorType,
    ActorTypeConfig,
    Connection,
    Connector,
    CrmType,
    User,
)
from portal.services import import_rules as rules
from portal.services.import_rules import (
    CONTACT_INFO_CHOICES,
    CONTACT_INFO_KINDS,
    ID_SOURCE_CHOICES,
    MATCH_CHOICES,
)
from portal.services.sync.fieldmap import MappedField, mapped_fields

COMPANY_TYPES = (ActorType.CUSTOMER, ActorType.SUPPLIER, ActorType.PARTNER)

ACTION_CHOICES = {
    "add": "Add anyway (a new record)",
    "merge": "Merge: fill the empty fields of the existing record",
    "replace": "Replace: overwrite the existing record's fields",
    "skip": "Skip the actor",
}
LIST_POLICY_CHOICES = {
    "add": "Add a new CRM list item (and map it)",
    "default": "Use a default list item",
    "blank": "Leave the field blank",
}
PERSON_POLICY_CHOICES = {
    "import_company": "Import them under their company (importing the company too when it is not in the CRM)",
    "skip": "Skip persons whose company is not in the CRM",
    "no_company": "Import them without a company when their company is not in the CRM",
}

class ImportProblem(ValueError):
    """A wizard input or precondition that is not met; ``message`` is for the admin, ``field`` names the input."""

    def __init__(self, message: str, field: str | None = None):
        super().__init__(message)
        self.message = message
        self.field = field


# ------------------------------------------------------------------------------------------------ settings


@dataclass
class ImportSettings:
    company_match: str = "name"
    company_action: str = "merge"
    contact_match: str = "name"
    contact_action: str = "merge"
    project_match: str = "name"
    project_action: str = "merge"
    list_policy: str = "blank"
    # "ActorType.FIELDKEY" -> CRM ListItem id used by list_policy "default"
    list_defaults: dict[str, int] = field(default_factory=dict)
    include_persons: bool = False
    person_policy: str = "import_company"
    # The ID duplicate rule (import_rules): "link" (the ERP key in an existing link) or "field" (an ERP number
    # field, ``*_id_field``, mapped to a CRM number field).
    company_id_source: str = "link"
    company_id_field: str = ""
    contact_id_source: str = "link"
    contact_id_field: str = ""
    project_id_source: str = "link"
    project_id_field: str = ""
    # Phone numbers, e-mail addresses and web sites on an existing record (import_rules.CONTACT_INFO_CHOICES).
    phone_policy: str = "action"
    email_policy: str = "action"
    url_policy: str = "action"
    # Persons without a parent in the ERP: create (or match) a CRM company from this Person field's value.
    company_from_name: bool = False
    company_name_field: str = ""

    def match(self, crm_type: str) -> str:
        return getattr(self, f"{crm_type}_match")

    def id_source(self, crm_type: str) -> str:
        return getattr(self, f"{crm_type}_id_source")

    def id_field(self, crm_type: str) -> str:
        return getattr(self, f"{crm_type}_id_field")

    def action(self, crm_type: str) -> str:
        return getattr(self, f"{crm_type}_action")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping | None) -> ImportSettings:
        data = dict(data or {})
        known = {f.name for f in dataclasses.fields(cls)}
        settings = cls(**{k: v for k, v in data.items() if k in known})
        settings.validate()
        return settings

    def validate(self) -> None:
        for crm_type in (CrmType.COMPANY, CrmType.CONTACT, CrmType.PROJECT):
            if self.match(crm_type) not in MATCH_CHOICES[crm_type]:
                raise ImportProblem("Choose how duplicates are found.", f"{crm_type}_match")
            if self.action(crm_type) not in ACTION_CHOICES:
                raise ImportProblem("Choose what to do with a duplicate.", f"{crm_type}_action")
            if self.id_source(crm_type) not in ID_SOURCE_CHOICES:
                raise ImportProblem("Choose what the ID rule compares.", f"{crm_type}_id_source")
            setattr(self, f"{crm_type}_id_field", str(self.id_field(crm_type) or "").strip())
            if self.match(crm_type) == "id":
                if self.action(crm_type) == "add":
                    raise ImportProblem("“Add anyway” cannot be combined with the ID rule: an ERP actor is linked "
                                        "to one CRM record only. Choose merge, replace or skip, or another rule.",
                                        f"{crm_type}_action")
                if self.id_source(crm_type) == "field" and not self.id_field(crm_type):
                    raise ImportProblem("Choose the ERP number field the ID rule compares.", f"{crm_type}_id_field")
        if self.list_policy not in LIST_POLICY_CHOICES:
            raise ImportProblem("Choose what to do with list values.", "list_policy")
        if self.person_policy not in PERSON_POLICY_CHOICES:
            raise ImportProblem("Choose what to do with persons.", "person_policy")
        for kind in CONTACT_INFO_KINDS:
            if getattr(self, f"{kind}_policy") not in CONTACT_INFO_CHOICES:
                raise ImportProblem(f"Choose what to do with {CONTACT_INFO_KINDS[kind].lower()}.", f"{kind}_policy")
        self.company_from_name = bool(self.company_from_name)
        self.company_name_field = str(self.company_name_field or "").strip()
        if self.company_from_name and not self.company_name_field:
            raise ImportProblem("Choose the person field that holds the company name.", "company_name_field")
        self.include_persons = bool(self.include_persons)
        self.list_defaults = {str(k): int(v) for k, v in (self.list_defaults or {}).items() if v not in (None, "")}


@dataclass
class ImportRequest:
    """What to import and how: the wizard's state, stored as ``SyncRun.options``."""

    connection_id: int
    actor_type: str
    restrictions: list[dict] = field(default_factory=list)
    all_results: bool = False
    keys: list[str] = field(default_factory=list)
    excluded: list[str] = field(default_factory=list)  # "ActorType:ErpKey" unticked in the preview
    settings: ImportSettings = field(default_factory=ImportSettings)

    def to_options(self) -> dict:
        return {"connection_id": self.connection_id, "actor_type": self.actor_type,
                "restrictions": list(self.restrictions), "all_results": bool(self.all_results),
                "keys": list(self.keys), "excluded": list(self.excluded), "settings": self.settings.to_dict()}

    @classmethod
    def from_options(cls, options: Mapping) -> ImportRequest:
        return cls(connection_id=int(options["connection_id"]), actor_type=str(options["actor_type"]),
                   restrictions=list(options.get("restrictions") or []),
                   all_results=bool(options.get("all_results")), keys=[str(k) for k in options.get("keys") or []],
                   excluded=[str(k) for k in options.get("excluded") or []],
                   settings=ImportSettings.from_dict(options.get("settings")))

    def is_excluded(self, actor_type: str, erp_key: str) -> bool:
        return f"{actor_type}:{erp_key}" in self._excluded_set

    @functools.cached_property
    def _excluded_set(self) -> frozenset[str]:
        return frozenset(self.excluded)

    @property
    def crm_type(self) -> str:
        return ACTOR_CRM_TYPE.get(self.actor_type, CrmType.COMPANY)


# ------------------------------------------------------------------------------------- what can be imported


def _user_in_scope(connection: Connection, user: User | None) -> bool:
    if connection.all_access or user is None:
        return True
    group_ids = {g.id for g in user.groups}
    return any(row.user_id == user.id or (row.group_id is not None and row.group_id in group_ids)
               for row in connection.access if row.can_connect)


def import_connections(user: User | None = None) -> list[Connection]:
    """Active connections (on a live connector) the user may use, with at least one importable actor type."""
    rows = db.session.scalars(select(Connection).join(Connector, Connection.connector_id == Connector.id)
                              .where(Connection.active.is_(True), Connection.deleted.is_(False),
                                     Connector.deleted.is_(False))
                              .order_by(Connection.name)).all()
    return [c for c in rows if _user_in_scope(c, user) and importable_types(c)]


def _write_fields(config: ActorTypeConfig) -> list[MappedField]:
    return [f for f in mapped_fields(config) if f.to_crm]


def importable_types(connection: Connection) -> list[ActorTypeConfig]:
    """Actor types offered for import: mapping active, still supported, with searchable fields (spec §5.3) and
    at least one field mapped to the CRM."""
    return [c for c in connection.actor_types
            if c.is_active and c.supported and c.searchable_fields and c.erp_actor_type in ACTOR_CRM_TYPE
            and _write_fields(c)]


def get_import_connection(connection_id: int | None, user: User | None = None) -> Connection:
    connection = db.session.get(Connection, connection_id) if connection_id else None
    if connection is None or connection.deleted:
        raise ImportProblem("Choose an ERP connection.", "connection_id")
    if not connection.active or connection.connector.deleted:
        raise ImportProblem(f"{connection.name} is not active; activate it on the Sync tab first.", "connection_id")
    if not _user_in_scope(connection, user):
        raise ImportProblem(f"You are not in the scope of {connection.name}.", "connection_id")
    return connection


def get_import_type(connection: Connection, actor_type: str | None) -> ActorTypeConfig:
    for config in importable_types(connection):
        if config.erp_actor_type == actor_type:
            return config
    raise ImportProblem("Choose an actor type that can be imported from this connection.", "actor_type")


def involved_configs(connection: Connection, request: ImportRequest) -> dict[str, list[ActorTypeConfig]]:
    """The actor types an import may write, per CRM type: the chosen one, the persons of companies ("with their
    persons"), the companies of persons (person policy "import_company")."""
    result: dict[str, list[ActorTypeConfig]] = {}
    main = connection.actor_type(request.actor_type)
    if main is not None:
        result[main.crm_type] = [main]
    person = persons_config(connection)
    if request.crm_type == CrmType.COMPANY and request.settings.include_persons and person is not None:
        result.setdefault(CrmType.CONTACT, []).append(person)
    if request.crm_type == CrmType.CONTACT and request.settings.person_policy == "import_company":
        result.setdefault(CrmType.COMPANY, []).extend(
            c for t in COMPANY_TYPES if (c := connection.actor_type(t)) is not None and c.is_active and c.supported)
    return result


def id_field_choices(connection: Connection, request: ImportRequest, crm_type: str) -> list[tuple[str, str]]:
    """The ERP number fields the ID rule of ``crm_type`` can compare in this import."""
    return rules.id_field_choices(involved_configs(connection, request).get(crm_type, []), crm_type)


def company_name_choices(connection: Connection) -> list[tuple[str, str]]:
    """The Person fields that can hold a company name (for "create the company from the company name")."""
    return rules.company_name_choices(connection.actor_type(ActorType.PERSON))


def check_settings(connection: Connection, request: ImportRequest) -> None:
    """The settings against the connection's mappings (after ``ImportSettings.validate``): the ID rule's ERP
    field must be mapped to a CRM number field of the actor types imported, the company-name field must be a
    Person field, and only persons imported on their own can have a company made from a name. Raises
    ImportProblem naming the form field."""
    settings = request.settings
    for crm_type in involved_configs(connection, request):
        if settings.match(crm_type) != "id" or settings.id_source(crm_type) != "field":
            continue
        choices = dict(id_field_choices(connection, request, crm_type))
        if not choices:
            raise ImportProblem(f"No ERP field is mapped to a CRM number field of the {crm_type} (Number or Code): "
                                "map one, or let the ID rule use the ERP key.", f"{crm_type}_id_field")
        if settings.id_field(crm_type) not in choices:
            raise ImportProblem(f"{settings.id_field(crm_type) or 'The field'} is not mapped to a CRM number field "
                                f"of the {crm_type}; choose one of the listed fields.", f"{crm_type}_id_field")
    if settings.company_from_name:
        if request.crm_type != CrmType.CONTACT:
            raise ImportProblem("A company can be made from a person's company name only when persons are imported "
                                "on their own (actor type Person).", "company_from_name")
        if settings.company_name_field not in dict(company_name_choices(connection)):
            raise ImportProblem("Choose a text field of the ERP's persons that holds the company name.",
                                "company_name_field")


def settings_summary(connection: Connection, request: ImportRequest) -> list[tuple[str, str]]:
    """(label, value) of the options of an import, for the preview and the run page."""
    settings = request.settings
    involved = involved_configs(connection, request) if connection is not None else {}
    rows = []
    for crm_type in (CrmType.COMPANY, CrmType.CONTACT, CrmType.PROJECT):
        if crm_type not in involved:
            continue
        rule = settings.match(crm_type)
        text = MATCH_CHOICES[crm_type].get(rule, rule)
        if rule == "id":
            if settings.id_source(crm_type) == "field":
                text = f"ID: {dict(id_field_choices(connection, request, crm_type)).get(settings.id_field(crm_type), settings.id_field(crm_type))}"
            else:
                text = "ID: the ERP key of an existing link"
        rows.append((f"Duplicate {crm_type}s", f"{text}; {ACTION_CHOICES.get(settings.action(crm_type), '')}"))
    for kind, label in CONTACT_INFO_KINDS.items():
        policy = getattr(settings, f"{kind}_policy")
        rows.append((label, CONTACT_INFO_CHOICES.get(policy, policy)))
    if request.crm_type == CrmType.CONTACT:
        rows.append(("Persons without a company", f"a company is made from {settings.company_name_field}"
                     if settings.company_from_name else PERSON_POLICY_CHOICES.get(settings.person_policy, "")))
    return rows


def persons_config(connection: Connection) -> ActorTypeConfig | None:
    """The Person actor type when its persons can be imported with their companies."""
    config = connection.actor_type(ActorType.PERSON)
    if config is None or not config.is_active or not config.supported or not _write_fields(config):
        return None
    return config
