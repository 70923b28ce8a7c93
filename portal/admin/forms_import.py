"""Forms of the Import from ERP wizard (Settings → Import). The criteria grid has a variable number of typed rows
and is parsed by ``criteria_from_form``; everything else is plain WTForms."""

from __future__ import annotations

from collections.abc import Mapping

from flask_wtf import FlaskForm
from werkzeug.datastructures import MultiDict
from wtforms import BooleanField, HiddenField, RadioField, SelectField

from portal.models import CrmType
from portal.services.import_rules import CONTACT_INFO_CHOICES, ID_SOURCE_CHOICES, MATCH_CHOICES
from portal.services.import_search import Criterion
from portal.services.import_settings import ACTION_CHOICES, LIST_POLICY_CHOICES, PERSON_POLICY_CHOICES, ImportSettings


class StartForm(FlaskForm):
    """Step 1: connection and actor type (a GET form: nothing changes yet)."""

    class Meta:
        csrf = False

    connection_id = SelectField("ERP connection", coerce=int, validate_choice=False)
    actor_type = SelectField("Actor type", validate_choice=False)


def _choices(mapping: Mapping[str, str]) -> list[tuple[str, str]]:
    return list(mapping.items())


class SettingsForm(FlaskForm):
    """Step 3: duplicates, lists and persons (spec §5.6)."""

    state = HiddenField()
    company_match = SelectField("Find duplicate companies by", choices=_choices(MATCH_CHOICES[CrmType.COMPANY]))
    company_action = SelectField("When a company matches", choices=_choices(ACTION_CHOICES))
    contact_match = SelectField("Find duplicate contacts by", choices=_choices(MATCH_CHOICES[CrmType.CONTACT]))
    contact_action = SelectField("When a contact matches", choices=_choices(ACTION_CHOICES))
    project_match = SelectField("Find duplicate projects by", choices=_choices(MATCH_CHOICES[CrmType.PROJECT]))
    project_action = SelectField("When a project matches", choices=_choices(ACTION_CHOICES))
    list_policy = RadioField("List values that have no list mapping", choices=_choices(LIST_POLICY_CHOICES),
                             default="blank")
    include_persons = BooleanField("Also import the persons of these companies")
    person_policy = RadioField("Persons whose company is not in the CRM", choices=_choices(PERSON_POLICY_CHOICES),
                               default="import_company")
    # The ID duplicate rule: what it compares (the ERP key of an existing link, or an ERP number field mapped to a
    # CRM number field; the fields are the connection's, set by the route).
    company_id_source = SelectField("The ID rule for companies compares", choices=_choices(ID_SOURCE_CHOICES), default="link")
    company_id_field = SelectField("ERP number field of the company ID rule", choices=[], validate_choice=False, default="")
    contact_id_source = SelectField("The ID rule for contacts compares", choices=_choices(ID_SOURCE_CHOICES), default="link")
    contact_id_field = SelectField("ERP number field of the contact ID rule", choices=[], validate_choice=False, default="")
    project_id_source = SelectField("The ID rule for projects compares", choices=_choices(ID_SOURCE_CHOICES), default="link")
    project_id_field = SelectField("ERP number field of the project ID rule", choices=[], validate_choice=False, default="")
    phone_policy = SelectField("Phone numbers", choices=_choices(CONTACT_INFO_CHOICES), default="action")
    email_policy = SelectField("E-mail addresses", choices=_choices(CONTACT_INFO_CHOICES), default="action")
    url_policy = SelectField("Web sites", choices=_choices(CONTACT_INFO_CHOICES), default="action")
    company_from_name = BooleanField("Create the company from the person's company name")
    company_name_field = SelectField("Person field with the company name", choices=[], validate_choice=False,
                                     default="")

    FIELDS = ("company_match", "company_action", "contact_match", "contact_action", "project_match",
              "project_action", "list_policy", "include_persons", "person_policy", "company_id_source",
              "company_id_field", "contact_id_source", "contact_id_field", "project_id_source", "project_id_field",
              "phone_policy", "email_policy", "url_policy", "company_from_name", "company_name_field")

    def fill(self, settings: ImportSettings) -> None:
        for name in self.FIELDS:
            self[name].data = getattr(settings, name)

    def set_choices(self, id_fields: Mapping[str, list[tuple[str, str]]], name_fields: list[tuple[str, str]]) -> None:
        """The connection's fields: ERP number fields per CRM type (ID rule) and the Person's text fields."""
        for crm_type in (CrmType.COMPANY, CrmType.CONTACT, CrmType.PROJECT):
            choices = list(id_fields.get(crm_type, []))
            empty = "(choose a field)" if choices else "(no ERP field is mapped to a CRM number field)"
            self[f"{crm_type}_id_field"].choices = [("", empty), *choices]
        self.company_name_field.choices = [("", "(choose a field)"), *name_fields]

    def settings(self, list_defaults: dict[str, int]) -> ImportSettings:
        return ImportSettings(
            company_match=self.company_match.data, company_action=self.company_action.data,
            contact_match=self.contact_match.data, contact_action=self.contact_action.data,
            project_match=self.project_match.data, project_action=self.project_action.data,
            list_policy=self.list_policy.data, list_defaults=list_defaults,
            include_persons=bool(self.include_persons.data), person_policy=self.person_policy.data,
            company_id_source=self.company_id_source.data, company_id_field=self.company_id_field.data or "",
            contact_id_source=self.contact_id_source.data, contact_id_field=self.contact_id_field.data or "",
            project_id_source=self.project_id_source.data, project_id_field=self.project_id_field.data or "",
            phone_policy=self.phone_policy.data, email_policy=self.email_policy.data, url_policy=self.url_policy.data,
            company_from_name=bool(self.company_from_name.data), company_name_field=self.company_name_field.data or "")


def criteria_from_form(form: MultiDict) -> list[Criterion]:
    """The criteria grid's rows (``crit-<i>-field``, ``-op``, ``-value`` (several for lists), ``-value2``,
    ``-active``), in row order."""
    indexes = sorted({int(key.split("-")[1]) for key in form if key.startswith("crit-") and key.endswith("-field")
                      and key.split("-")[1].isdigit()})
    rows = []
    for i in indexes:
        prefix = f"crit-{i}-"
        values = [v for v in form.getlist(prefix + "value")]
        if form.get(prefix + "value2") is not None:
            values = (values or [""])[:1] + [form.get(prefix + "value2", "")]
        rows.append(Criterion(field=form.get(prefix + "field", ""), operator=form.get(prefix + "op", ""),
                              values=values, active=form.get(prefix + "active") == "1"))
    return rows


def row_change(action: str, rows: int) -> tuple[str, int] | None:
    """``field-<i>`` / ``operator-<i>`` (a row's field or operator select changed) as (kind, row index); None for
    any other action or a row that is not there."""
    kind, _, index = action.partition("-")
    if kind in ("field", "operator") and index.isdigit() and int(index) < rows:
        return kind, int(index)
    return None


def list_defaults_from_form(form: MultiDict) -> dict[str, int]:
    """``default-<ActorType>.<FIELDKEY>`` selects: the CRM list item used by the "Use a default" policy."""
    result = {}
    for key, value in form.items():
        if key.startswith("default-") and value.strip().isdigit():
            result[key[len("default-"):]] = int(value)
    return result


class UndoForm(FlaskForm):
    """Confirm the undo of an import run: the preview's list travels signed, so only what was shown is removed."""

    previewed = HiddenField()
