"""Fuzzing every route's integer parameters and every form: nothing answers 500.

* **Path integers** — every ``<int:…>`` of every rule in ``app.url_map`` with numbers a database cannot hold
  (2**31 … 2**64 and more): 404, never 500.
* **Query and form integers** — every parameter name the views read with ``request.args/form/values.get`` (found
  by scanning portal/, so a new one is covered), with such numbers, on every route: never 500.
* **Forms** (hypothesis) — every form the pages render (as an admin and as a user who may create in the ERP; the
  fields found in the HTML), posted to its action with generated values: huge and negative numbers, floats,
  ``nan``/``inf``, text, unicode, empty. Never 500. Bounded examples, so it runs in well under a minute.
"""

from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import urlencode, urlsplit

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from werkzeug.exceptions import MethodNotAllowed, NotFound
from werkzeug.routing import IntegerConverter

from portal.security.params import MAX_INT
from tests.integration import security_world

pytestmark = pytest.mark.db

ROOT = Path(__file__).resolve().parents[2]
HUGE = [MAX_INT + 1, 2**63 - 1, 2**63, 2**64, 10**30]
HUGE_TEXT = [str(n) for n in HUGE] + ["-" + str(2**63 + 1), "9" * 400]


@pytest.fixture
def app_config(app_config):
    return {**app_config, "DEMO_DATA": True}


def _read_names() -> list[str]:
    """Every parameter name a view reads from the query string or a form (``….get("name"…)``)."""
    pattern = re.compile(r"""(?:request\.(?:args|values|form)|\bform)\.get(?:list)?\(\s*["']([A-Za-z0-9_-]+)["']""")
    names = set()
    for path in (ROOT / "portal").rglob("*.py"):
        names.update(pattern.findall(path.read_text(encoding="utf-8")))
    return sorted(names)


def _routes(app):
    for rule in app.url_map.iter_rules():
        if rule.endpoint == "static":
            continue
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            yield rule, method


def _world(app, fake):
    with app.app_context():
        world = security_world.build(fake)
    admin = app.test_client()
    return world, admin


def _call(app, world, client, role, method, url, **kwargs):
    security_world.relogin(client, world, role)
    return client.open(url, method=method, **kwargs)


# --- integers in paths, query strings and forms ----------------------------------------------------------------


def test_the_scan_finds_the_parameters_views_read():
    names = _read_names()
    assert {"page", "connection_id", "field_id", "run", "connection"} <= set(names)


def test_huge_integers_in_paths_are_404(app, fake):
    world, client = _world(app, fake)
    bad = []
    for rule, method in _routes(app):
        ints = [name for name, conv in rule._converters.items() if isinstance(conv, IntegerConverter)]
        for name in ints:
            for number in HUGE:
                with app.app_context():
                    url = world.url(rule, **{name: number})
                response = _call(app, world, client, "admin", method, url, htmx=True)
                if response.status_code != 404:
                    bad.append(f"{method} {url}: {response.status_code}")
    assert not bad, "\n".join(bad)


def test_huge_integers_in_query_strings_and_forms_never_500(app, fake):
    world, client = _world(app, fake)
    names = _read_names()
    bad = []
    for rule, method in _routes(app):
        if rule.endpoint == "auth.logout":
            continue
        with app.app_context():
            url = world.url(rule)
        for number in HUGE_TEXT:
            values = dict.fromkeys(names, number)
            if method == "GET":
                response = _call(app, world, client, "admin", "GET", f"{url.split('?')[0]}?{urlencode(values)}",
                                 htmx=True)
            else:
                response = _call(app, world, client, "admin", method, url, data=values, htmx=True)
            if response.status_code >= 500:
                bad.append(f"{method} {url} with {number[:12]}…: {response.status_code}")
    assert not bad, "\n".join(bad)


# --- forms (hypothesis) ----------------------------------------------------------------------------------------


class _Forms(HTMLParser):
    """Forms (action, method, fields) and htmx-posting controls of a page; a field is (name, kind, choices)."""

    def __init__(self, page_url: str):
        super().__init__()
        self.page_url = page_url
        self.forms: list[dict] = []
        self._form: dict | None = None
        self._select: tuple | None = None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "form":
            action = a.get("hx-post") or a.get("action") or self.page_url
            method = "POST" if a.get("hx-post") or (a.get("method") or "get").lower() == "post" else "GET"
            if a.get("hx-get"):
                action, method = a["hx-get"], "GET"
            self._form = {"action": action, "method": method, "fields": {}}
            self.forms.append(self._form)
        elif tag in ("input", "textarea", "select", "button") and a.get("name"):
            kind = a.get("type", tag)
            if tag == "select":
                self._select = (a["name"], [])
                kind = "select"
            target = self._form
            if target is None and (a.get("hx-post") or a.get("hx-get")):
                target = {"action": a.get("hx-post") or a.get("hx-get"),
                          "method": "POST" if a.get("hx-post") else "GET", "fields": {}}
                self.forms.append(target)
            if target is not None:
                target["fields"].setdefault(a["name"], (kind, self._select[1] if tag == "select" else
                                                        [a.get("value", "")]))
        elif tag == "option" and self._select is not None:
            self._select[1].append(a.get("value", ""))

    def handle_endtag(self, tag):
        if tag == "form":
            self._form = None
        elif tag == "select":
            self._select = None


def _discover_forms(app, world, client, role) -> list[dict]:
    """The distinct forms on every GET page of every route, as ``role`` sees them."""
    adapter = app.url_map.bind("localhost")
    found: dict[tuple, dict] = {}
    for rule, method in _routes(app):
        if method != "GET" or rule.endpoint in ("auth.login",):
            continue
        with app.app_context():
            url = world.url(rule)
        for htmx in (False, True):
            response = _call(app, world, client, role, "GET", url, htmx=htmx)
            if response.status_code != 200 or "html" not in response.content_type:
                continue
            parser = _Forms(url)
            parser.feed(response.get_data(as_text=True))
            for form in parser.forms:
                action = urlsplit(form["action"].replace("&amp;", "&"))
                try:
                    endpoint, _ = adapter.match(action.path, method=form["method"])
                except (NotFound, MethodNotAllowed):
                    continue
                if endpoint == "auth.logout":
                    continue
                key = (form["method"], action.path, tuple(sorted(form["fields"])))
                found.setdefault(key, {**form, "path": action.path, "query": action.query, "role": role,
                                       "endpoint": endpoint})
    return list(found.values())


NUMBERS = st.one_of(st.integers(min_value=-(2**70), max_value=2**70).map(str),
                    st.sampled_from(HUGE_TEXT + ["0", "-1", "1e400", "-1e400", "nan", "inf", "1.5", "0x10", " 7 ",
                                                 "٣", "1_000"]))
TEXTS = st.one_of(st.text(max_size=40), st.sampled_from(["", " ", "'\"<>", "\x00", "a" * 300, "2024-13-45",
                                                         "9999-12-31", "-0001-01-01"]))


def _value(kind: str, choices: list[str]):
    options = [NUMBERS, TEXTS]
    if choices:
        options.append(st.sampled_from(choices))
    return st.one_of(*options)


def _last_error(caplog) -> str:
    """The exception behind the last 500 (logged by portal/errors.py), for the failure message."""
    for record in reversed(caplog.records):
        if record.exc_info:
            return repr(record.exc_info[1])[:300]
    return "?"


def test_every_form_survives_generated_input(app, fake, caplog):
    world, client = _world(app, fake)
    forms = [form for form in _discover_forms(app, world, client, "admin")
             + _discover_forms(app, world, client, "can_create")]
    endpoints = {form["endpoint"] for form in forms}
    # the sweep must really reach the forms: Settings, CRM, ERP tab and Demo ERP ones
    assert {"admin.user_create", "admin.sync_interval", "crm.company_create", "erp_tab.create",
            "demo_erp.actor_edit", "admin.mappings_label"} <= endpoints, sorted(endpoints)
    failures: dict[str, str] = {}  # endpoint -> the first input it failed on (every endpoint is reported)

    @settings(max_examples=1500, deadline=None, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(st.data())
    def post_a_form(data):
        form = data.draw(st.sampled_from(forms), label="form")
        values = {name: data.draw(_value(kind, choices), label=name) for name, (kind, choices) in form["fields"].items()}
        path = form["path"] + (f"?{form['query']}" if form["query"] else "")
        if form["method"] == "GET":
            response = _call(app, world, client, form["role"], "GET",
                             f"{form['path']}?{urlencode(values)}", htmx=True)
        else:
            response = _call(app, world, client, form["role"], "POST", path, data=values, htmx=True)
        if response.status_code >= 500:
            failures.setdefault(form["endpoint"], f"{form['method']} {path} {values!r}: {response.status_code} "
                                                  f"{_last_error(caplog)}")

    post_a_form()
    assert not failures, "\n".join(failures.values())


def test_the_sync_log_record_filter_takes_a_number_no_id_can_be(app, fake):
    world, client = _world(app, fake)
    response = _call(app, world, client, "admin", "GET", f"/settings/sync/log?record={2**64}", htmx=True)
    assert response.status_code == 200


def test_add_connection_without_any_connector_is_a_form_error(app, fake):
    from portal.extensions import db
    from portal.models import Connector

    world, client = _world(app, fake)
    with app.app_context():
        for connector in db.session.query(Connector):
            connector.deleted = True
        db.session.commit()
    response = _call(app, world, client, "admin", "POST", "/settings/connections/new", data={"name": "X"},
                     htmx=True)
    assert response.status_code == 422
