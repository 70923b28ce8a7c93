"""Integers from the outside world are bounded before they reach the database.

A path, query or form integer larger than the database can hold (``/companies/99999999999999999999``,
``?page=2**64``, a select posted with ``connection_id=2**64``) used to answer HTTP 500: SQLite refuses a Python int
beyond 64 bits (``OverflowError``), PostgreSQL's ``integer`` columns stop at 2**31 - 1, and a page number times the
page size overflows an OFFSET. Every integer the portal accepts is therefore within ±``MAX_INT``:

* **paths** — the app's ``int`` converter is :class:`BoundedIntConverter` (``init_app`` registers it before the
  blueprints, so every ``<int:…>`` rule uses it): a larger number does not match the rule, i.e. 404;
* **query strings and forms read in views** — ``request.args/form/values.get(name, type=int)`` (and ``getlist``)
  treat an out-of-range number like any other non-number: the default (:class:`PortalRequest`);
* **WTForms** — :class:`BoundedIntegerField` and :func:`coerce_int` (for ``SelectField(coerce=…)``) turn an
  out-of-range number into a validation error (422), like text in a number field; ``init_app`` also makes every
  ``IntegerField`` and ``coerce=int`` select of the portal's forms bounded when the form is built (see
  :func:`bound_form_field`), so a form written later is covered without remembering to.

Text is not bounded here (each field has its rules), but a NUL character anywhere in a request answers 400
(:func:`refuse_nul`): PostgreSQL cannot take it in any text parameter.
"""

from __future__ import annotations

import builtins
from functools import cached_property

from flask import Flask, abort, request
from flask.wrappers import Request
from werkzeug.datastructures import CombinedMultiDict, ImmutableMultiDict, MultiDict
from werkzeug.routing import IntegerConverter
from wtforms import fields as wtf_fields
from wtforms.meta import DefaultMeta

from portal.database import MAX_INT

OUT_OF_RANGE = "Enter a whole number between {low} and {high}."


def bounded_int(value) -> int:
    """``int(value)``, refusing (ValueError) a number outside ±MAX_INT as ``int`` refuses text."""
    number = int(value)
    if not -MAX_INT <= number <= MAX_INT:
        raise ValueError(f"{value!r} is out of range")
    return number


# --- paths ----------------------------------------------------------------------------------------------------


def digits_up_to(bound: int) -> str:
    """A regular expression matching the decimal numbers 0 … ``bound`` (ASCII digits, leading zeros allowed)."""
    text = str(bound)
    n = len(text)
    parts = ["0"]
    if n > 1:
        parts.append(f"[1-9][0-9]{{0,{n - 2}}}")  # every number with fewer digits
    for i, digit in enumerate(text):  # n digits: equal to the bound up to i, smaller at i, anything after
        low = 1 if i == 0 else 0
        if int(digit) > low:
            parts.append(f"{text[:i]}[{low}-{int(digit) - 1}][0-9]{{{n - i - 1}}}")
    parts.append(text)
    return "0*(?:" + "|".join(dict.fromkeys(parts)) + ")"


class BoundedIntConverter(IntegerConverter):
    """``<int:x>`` that matches 0 … MAX_INT only (``max`` may lower the bound, never raise it).

    The bound is in the converter's regular expression, not only in ``to_python``: a number that fails only in
    ``to_python`` makes werkzeug answer 405 when a rule with the same path and another method exists (the
    ERP tab's GET dialog and POST action), while a path no rule's pattern matches is a plain 404."""

    def __init__(self, map, fixed_digits: int = 0, min: int | None = None,  # noqa: A002 - werkzeug's names
                 max: int | None = None, signed: bool = False) -> None:  # noqa: A002
        bound = MAX_INT if max is None else builtins.min(max, MAX_INT)
        super().__init__(map, fixed_digits=fixed_digits, min=min, max=bound, signed=signed)
        if signed and self.min is None:
            self.min = -MAX_INT
        if not fixed_digits:
            self.regex = ("-?" if signed else "") + digits_up_to(bound)


# --- query strings and forms read by views ---------------------------------------------------------------------


class _BoundedTypes:
    """``get(…, type=int)`` / ``getlist(…, type=int)`` with :func:`bounded_int` in place of ``int``."""

    def get(self, key, default=None, type=None):  # noqa: A002 - werkzeug's name
        return super().get(key, default, bounded_int if type is int else type)

    def getlist(self, key, type=None):  # noqa: A002
        return super().getlist(key, bounded_int if type is int else type)


class BoundedMultiDict(_BoundedTypes, ImmutableMultiDict):
    pass


class BoundedCombinedMultiDict(_BoundedTypes, CombinedMultiDict):
    pass


class PortalRequest(Request):
    """The portal's request: ``args``, ``form`` and ``values`` bound ``type=int`` conversions."""

    parameter_storage_class = BoundedMultiDict

    @cached_property
    def values(self) -> BoundedCombinedMultiDict:
        sources = [self.args]
        if self.method != "GET":
            sources.append(self.form)
        return BoundedCombinedMultiDict([d if isinstance(d, MultiDict) else MultiDict(d) for d in sources])


# --- WTForms --------------------------------------------------------------------------------------------------


def coerce_int(value) -> int:
    """``SelectField(coerce=coerce_int)``: like ``int``, and an out-of-range number is a validation error."""
    return bounded_int(value)


class _BoundedIntegerMixin:
    def process_formdata(self, valuelist):
        super().process_formdata(valuelist)
        if self.data is not None and not -MAX_INT <= self.data <= MAX_INT:
            self.data = None
            raise ValueError(self.gettext(OUT_OF_RANGE.format(low=-MAX_INT, high=MAX_INT)))


class BoundedIntegerField(_BoundedIntegerMixin, wtf_fields.IntegerField):
    """An ``IntegerField`` that refuses a number outside ±MAX_INT with a field error (not a database error)."""


_BOUNDED_CLASSES: dict[type, type] = {wtf_fields.IntegerField: BoundedIntegerField}


def _bounded_class(field_class: type) -> type:
    if field_class not in _BOUNDED_CLASSES:  # IntegerRangeField and other subclasses keep their widget
        _BOUNDED_CLASSES[field_class] = type(f"Bounded{field_class.__name__}", (_BoundedIntegerMixin, field_class),
                                             {})
    return _BOUNDED_CLASSES[field_class]


def bound_form_field(unbound_field):
    """What a form field becomes in the portal: an ``IntegerField`` (or subclass) is bounded
    (:class:`BoundedIntegerField`), ``coerce=int`` becomes ``coerce=coerce_int``. Done once per declared field
    (the declaration is shared by every instance of the form, and the change is idempotent). Every Flask-WTF form
    binds its fields through here once :func:`init_app` ran."""
    field_class = unbound_field.field_class
    if issubclass(field_class, wtf_fields.IntegerField) and not issubclass(field_class, _BoundedIntegerMixin):
        unbound_field.field_class = _bounded_class(field_class)
    if unbound_field.kwargs.get("coerce") is int:
        unbound_field.kwargs["coerce"] = coerce_int
    return unbound_field


def _bind_field(self, form, unbound_field, options):
    return _original_bind_field(self, form, bound_form_field(unbound_field), options)


_original_bind_field = DefaultMeta.bind_field


# --- NUL characters -----------------------------------------------------------------------------------------------


def refuse_nul() -> None:
    """A NUL character in the path, the query or a form answers 400: no text a person types holds one, and
    PostgreSQL refuses it in any text parameter (a search for ``q=%00`` was a 500 there). What is stored is also
    checked by ``portal.services.crm_rules`` (the import and the sync read text from ERPs, not from requests)."""
    if "\x00" in request.path:
        abort(400)
    sources = [request.args]
    if request.method not in ("GET", "HEAD", "OPTIONS"):
        sources.append(request.form)
    for values in sources:
        for key, value in values.items(multi=True):
            if "\x00" in key or "\x00" in value:
                abort(400)


# --- wiring ---------------------------------------------------------------------------------------------------


def init_app(app: Flask) -> None:
    """Call before any blueprint is registered: the ``int`` converter is looked up when a rule is added."""
    app.url_map.converters["int"] = BoundedIntConverter
    app.request_class = PortalRequest
    app.before_request(refuse_nul)
    from flask_wtf import FlaskForm

    FlaskForm.Meta.bind_field = _bind_field
