"""Browser (issue #18, point 4): a user creates a personal API token on the Account page, sees it once, uses it
against the API, and revokes it — after which the API refuses it."""

from __future__ import annotations

import re

import pytest

pytest.importorskip("playwright")
from playwright.sync_api import expect  # noqa: E402

pytestmark = pytest.mark.e2e


def test_an_api_token_is_shown_once_works_and_stops_working_when_revoked(live_server, admin_page):
    page, url = admin_page, live_server.url
    page.goto(f"{url}/account")
    section = page.locator("#api-tokens")
    expect(section).to_contain_text("You have no API tokens.")
    section.get_by_label("Name").fill("Nightly script")
    section.get_by_label(re.compile(r"^read")).check()
    section.get_by_role("button", name="Create token").click()
    secret_box = section.locator("#new-api-token")
    expect(secret_box).to_be_visible()
    expect(section).to_contain_text("it is shown only this once")
    secret = secret_box.inner_text().strip()
    row = section.get_by_role("row", name=re.compile("Nightly script"))
    expect(row).to_contain_text(secret[:8])  # the list shows only the prefix
    assert secret not in row.inner_text()

    answer = page.request.get(f"{url}/api/v1/connections", headers={"Authorization": f"Bearer {secret}"})
    assert answer.status == 200, answer.text()

    page.reload()  # shown once: gone after a reload
    expect(page.locator("#new-api-token")).to_have_count(0)
    page.locator("#api-tokens").get_by_role("row", name=re.compile("Nightly script")).get_by_role(
        "button", name="Revoke").click()  # the confirmation is accepted by the admin_page fixture
    expect(page.locator("#api-tokens").get_by_role("row", name=re.compile("Nightly script"))).to_contain_text(
        "Revoked")
    answer = page.request.get(f"{url}/api/v1/connections", headers={"Authorization": f"Bearer {secret}"})
    assert answer.status == 401
