"""Forms of the Lists settings screen (countries, business, category, project status)."""

from __future__ import annotations

from flask_wtf import FlaskForm
from wtforms import StringField

from portal.services.lists import NAME_MAX_LENGTH


class ListItemForm(FlaskForm):
    # Length and duplicates are checked by portal/services/lists.py so the messages are the same everywhere.
    name = StringField("Name", render_kw={"maxlength": NAME_MAX_LENGTH, "autocomplete": "off"})
