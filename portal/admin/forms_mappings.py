"""Input parsing for the mapping screens (Mappings, List mapping, Defaults).

CSRF is checked for every POST by the app-wide CSRFProtect (the token travels in the htmx header or a hidden
input), so these forms switch off their own token and only turn form data into typed values. The rules live in
the portal/services/mapping package.
"""

from __future__ import annotations

from flask_wtf import FlaskForm
from wtforms import BooleanField, HiddenField, IntegerField, StringField
from wtforms.validators import Length, Optional

FALSE_VALUES = (False, "false", "", "0", "off", "no", "False")


def _flag(label: str = "") -> BooleanField:
    return BooleanField(label, false_values=FALSE_VALUES)


class _NoCsrfForm(FlaskForm):
    class Meta:
        csrf = False


class MappingRowForm(_NoCsrfForm):
    """One row of the mapping grid. ``set_to_crm`` / ``set_to_erp`` come from a pressed direction button and carry
    the wanted state (so a double click cannot flip it back)."""

    crm_field = StringField(validators=[Optional(), Length(max=64)])
    to_crm = _flag()
    to_erp = _flag()
    show_in_search = _flag("Show in search")
    show_in_gui = _flag("Show in ERP tab")
    set_to_crm = HiddenField()
    set_to_erp = HiddenField()

    def wanted(self, name: str) -> bool:
        explicit = getattr(self, f"set_{name}").data
        if explicit not in (None, ""):
            return explicit not in FALSE_VALUES
        return bool(getattr(self, name).data)


class ActorSwitchForm(_NoCsrfForm):
    on = _flag()
    # Switching off on an active connection is asked first; the confirmation's own post carries this.
    confirmed = _flag()


class ActorLabelForm(_NoCsrfForm):
    """The name users see for an actor type on the connection; trimmed and checked by
    portal/services/actor_labels.py (empty = the standard name)."""

    label = StringField("Name shown to users")


class DefaultForm(_NoCsrfForm):
    field_id = IntegerField(validators=[Optional()])
    set_default = _flag("Set default value")
    value = StringField("Default value", validators=[Optional(), Length(max=4000)])
    ask_user = _flag("Ask user for value")
    mandatory = _flag("Mandatory – user must fill in value")
