"""Every settings URL refuses plain users (a sweep of the url_map, so new admin routes are covered at once)."""

from __future__ import annotations

import re

import pytest


def _admin_urls(app):
    urls = []
    for rule in app.url_map.iter_rules():
        if not rule.endpoint.startswith("admin."):
            continue
        path = re.sub(r"<(?:int:)?[a-z_]+>", "1", rule.rule)
        path = re.sub(r"<any\(([a-z_]+)[^)]*\):[a-z_]+>", r"\1", path)
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            urls.append((method, path))
    return urls


def test_the_sweep_finds_the_settings_routes(app):
    paths = {path for _method, path in _admin_urls(app)}
    assert "/settings/sync" in paths and "/settings/connections/new" in paths


@pytest.mark.parametrize("persona", ["user_client", "outsider_client"])
def test_plain_users_get_403_on_every_admin_url(app, request, persona):
    client = request.getfixturevalue(persona)
    for method, path in _admin_urls(app):
        response = client.open(path, method=method)
        assert response.status_code == 403, (method, path, response.status_code)
        htmx = client.open(path, method=method, htmx=True)
        assert htmx.status_code == 403, (method, path)


def test_anonymous_users_are_sent_to_login_from_every_admin_url(app, client):
    for method, path in _admin_urls(app):
        response = client.open(path, method=method)
        assert response.status_code == 302 and "/login" in response.headers["Location"], (method, path)


@pytest.mark.parametrize("path,current", [
    ("/settings/connections/1/list-mapping", "Sync"), ("/settings/connections/1/defaults", "Sync"),
    ("/settings/connections/1/rank", "Sync"), ("/settings/sync/alerts", "Sync"),
    ("/settings/sync/issues", "Sync issues"), ("/settings/lists", "Lists"), ("/settings/users", "Users"),
])
def test_the_settings_navigation_marks_the_section_of_every_page(app, path, current):
    with app.test_request_context(path):
        from flask import request

        assert request.endpoint is not None, path
        context = {}
        for processor in app.template_context_processors["admin"]:  # the blueprint's settings_nav()
            context.update(processor())
        assert [label for label, _url, is_current in context["settings_nav"]() if is_current] == [current]
