"""Settings → Lists: tabs per list, add, inline rename, reorder, soft delete/restore, and the rules behind them."""

from __future__ import annotations

import json
import re

import pytest
from sqlalchemy import select

from portal.extensions import db
from portal.models import AuditEvent, Company, CrmList, ListItem
from portal.services import lists as list_service

pytestmark = pytest.mark.db



def _text(response) -> str:
    return response.get_data(as_text=True)


def _names(app, list_name: str, include_deleted: bool = True) -> list[str]:
    with app.app_context():
        return [item.name for item in list_service.items(list_name, include_deleted)]


def _item(app, list_name: str, name: str) -> ListItem:
    with app.app_context():
        item = db.session.scalar(select(ListItem).where(ListItem.list_name == list_name, ListItem.name == name))
        db.session.expunge(item)
        return item


def _actions(app) -> list[str]:
    with app.app_context():
        return [e.action for e in db.session.scalars(select(AuditEvent).order_by(AuditEvent.id))]


# --- page and tabs -----------------------------------------------------------------------------------------


def test_lists_page_has_a_tab_per_list(admin_client):
    page = _text(admin_client.get("/settings/lists"))
    assert "<html" in page and 'role="tablist"' in page
    for label in ("Countries", "Business", "Category", "Project status"):
        assert f">{label}</a>" in page
    assert re.search(r'id="list-tab-country"[^>]*aria-selected="true"', page, re.S)
    assert "Norway" in page and "Retail" not in page
    assert 'href="/settings/lists" aria-current="page"' in page  # settings navigation


def test_tab_deep_link_and_htmx_panel(admin_client):
    page = _text(admin_client.get("/settings/lists?tab=project_status"))
    assert "<html" in page and "In progress" in page and "Norway" not in page
    assert re.search(r'id="list-tab-project_status"[^>]*aria-selected="true"', page, re.S)
    panel = _text(admin_client.get("/settings/lists?tab=business", htmx=True))
    assert "<html" not in panel and panel.lstrip().startswith('<div id="list-panel"')
    assert "Retail" in panel and 'id="list-tabs" hx-swap-oob="true"' in panel
    assert re.search(r'id="list-tab-business"[^>]*aria-selected="true"', panel, re.S)
    # An unknown tab shows the first list rather than an error.
    assert re.search(r'id="list-tab-country"[^>]*aria-selected="true"',
                     _text(admin_client.get("/settings/lists?tab=nope")), re.S)


# --- add ---------------------------------------------------------------------------------------------------


def test_add_item_htmx_returns_the_panel_with_a_toast(app, admin_client):
    response = admin_client.post("/settings/lists/category/items", data={"name": "  Reseller  "}, htmx=True)
    body = _text(response)
    assert response.status_code == 200 and "<html" not in body
    assert "Reseller" in body and 'id="list-panel"' in body
    assert json.loads(response.headers["HX-Trigger"])["toast"][0]["level"] == "success"
    assert _names(app, CrmList.CATEGORY)[-1] == "Reseller"  # added at the end
    assert "list_item.create" in _actions(app)


def test_add_item_without_htmx_redirects_to_the_tab(app, admin_client):
    response = admin_client.post("/settings/lists/business/items", data={"name": "Agriculture"})
    assert response.status_code == 302 and response.headers["Location"] == "/settings/lists?tab=business"
    assert "Agriculture" in _names(app, CrmList.BUSINESS)


@pytest.mark.parametrize(("name", "message"), [
    ("", "Enter a name."),
    ("nORWAY", "“Norway” is already in this list."),
    ("x" * 121, "The name can be at most 120 characters."),
])
def test_add_item_invalid_is_422(app, admin_client, name, message):
    before = _names(app, CrmList.COUNTRY)
    response = admin_client.post("/settings/lists/country/items", data={"name": name}, htmx=True)
    body = _text(response)
    assert response.status_code == 422
    assert "<html" not in body and message in body and 'aria-invalid="true"' in body
    assert _names(app, CrmList.COUNTRY) == before


def test_same_name_is_fine_in_another_list(app, admin_client):
    response = admin_client.post("/settings/lists/business/items", data={"name": "Norway"}, htmx=True)
    assert response.status_code == 200
    assert "Norway" in _names(app, CrmList.BUSINESS)


def test_add_to_unknown_list_is_404(admin_client):
    assert admin_client.post("/settings/lists/planets/items", data={"name": "Mars"}).status_code == 404


# --- inline rename -----------------------------------------------------------------------------------------


def test_inline_rename(app, admin_client):
    item = _item(app, CrmList.COUNTRY, "Germany")
    edit = admin_client.get(f"/settings/lists/items/{item.id}/edit", htmx=True)
    body = _text(edit)
    assert edit.status_code == 200 and body.lstrip().startswith(f'<tr id="item-{item.id}">')
    assert f'<label for="item-{item.id}-name"' in body and f'form="item-{item.id}-form"' in body
    assert 'hx-target="closest tr"' in body
    saved = admin_client.post(f"/settings/lists/items/{item.id}/edit", data={"name": "Deutschland"}, htmx=True)
    assert saved.status_code == 200
    row = _text(saved)
    assert row.lstrip().startswith(f'<tr id="item-{item.id}">') and "Deutschland" in row and "<input" not in row.split(
        "</td>")[0]
    assert _item(app, CrmList.COUNTRY, "Deutschland").id == item.id
    with app.app_context():
        event = db.session.scalar(select(AuditEvent).where(AuditEvent.action == "list_item.rename"))
        assert (event.before["name"], event.after["name"]) == ("Germany", "Deutschland")
        assert event.object_repr == "Countries: Deutschland" and event.actor_label == "alice@example.com"


def test_inline_rename_duplicate_is_422_and_keeps_the_row_editable(app, admin_client):
    item = _item(app, CrmList.COUNTRY, "Germany")
    response = admin_client.post(f"/settings/lists/items/{item.id}/edit", data={"name": "sweden"}, htmx=True)
    body = _text(response)
    assert response.status_code == 422
    assert "“Sweden” is already in this list." in body and 'value="sweden"' in body
    assert body.lstrip().startswith(f'<tr id="item-{item.id}">')
    assert _item(app, CrmList.COUNTRY, "Germany").id == item.id


def test_rename_cancel_returns_the_plain_row(app, admin_client):
    item = _item(app, CrmList.COUNTRY, "France")
    row = _text(admin_client.get(f"/settings/lists/items/{item.id}", htmx=True))
    assert row.lstrip().startswith(f'<tr id="item-{item.id}">') and "Rename" in row
    assert admin_client.get(f"/settings/lists/items/{item.id}").status_code == 302  # no-htmx: back to the page


def test_rename_without_htmx(app, admin_client):
    item = _item(app, CrmList.CATEGORY, "Partner")
    page = _text(admin_client.get(f"/settings/lists/items/{item.id}/edit"))
    assert "<html" in page and f'id="item-{item.id}-name"' in page
    assert re.search(r'id="list-tab-category"[^>]*aria-selected="true"', page, re.S)
    response = admin_client.post(f"/settings/lists/items/{item.id}/edit", data={"name": "Customer"})
    assert response.status_code == 422 and "<html" in _text(response)
    response = admin_client.post(f"/settings/lists/items/{item.id}/edit", data={"name": "Alliance partner"})
    assert response.status_code == 302 and response.headers["Location"] == "/settings/lists?tab=category"


# --- reorder -----------------------------------------------------------------------------------------------


def test_move_up_and_down(app, admin_client):
    assert _names(app, CrmList.PROJECT_STATUS) == ["Planned", "In progress", "On hold", "Completed"]
    on_hold = _item(app, CrmList.PROJECT_STATUS, "On hold")
    response = admin_client.post(f"/settings/lists/items/{on_hold.id}/move", data={"direction": "up"}, htmx=True)
    assert response.status_code == 200 and 'id="list-panel"' in _text(response)
    assert _names(app, CrmList.PROJECT_STATUS) == ["Planned", "On hold", "In progress", "Completed"]
    admin_client.post(f"/settings/lists/items/{on_hold.id}/move", data={"direction": "down"})
    admin_client.post(f"/settings/lists/items/{on_hold.id}/move", data={"direction": "down"})
    assert _names(app, CrmList.PROJECT_STATUS) == ["Planned", "In progress", "Completed", "On hold"]
    # Already last: nothing moves and nothing is audited.
    moves = _actions(app).count("list_item.move_down")
    admin_client.post(f"/settings/lists/items/{on_hold.id}/move", data={"direction": "down"})
    assert _names(app, CrmList.PROJECT_STATUS)[-1] == "On hold"
    assert _actions(app).count("list_item.move_down") == moves
    assert admin_client.post(f"/settings/lists/items/{on_hold.id}/move", data={"direction": "left"}).status_code == 400


def test_move_survives_equal_ranks(app, admin_client):
    with app.app_context():
        for item in list_service.items(CrmList.CATEGORY):
            item.rank = 0
        db.session.commit()
        order = [i.name for i in list_service.items(CrmList.CATEGORY)]
    last = _item(app, CrmList.CATEGORY, order[-1])
    admin_client.post(f"/settings/lists/items/{last.id}/move", data={"direction": "up"})
    assert _names(app, CrmList.CATEGORY) == order[:-2] + [order[-1], order[-2]]


# --- soft delete / restore ---------------------------------------------------------------------------------


def test_soft_delete_and_restore(app, admin_client):
    norway = _item(app, CrmList.COUNTRY, "Norway")
    with app.app_context():
        db.session.add(Company(name="Fjord AS", country_id=norway.id))
        db.session.commit()
        company_id = db.session.scalar(select(Company.id))
    page = _text(admin_client.get("/settings/lists"))
    form = re.search(rf'<form method="post" action="/settings/lists/items/{norway.id}/delete".*?</form>', page, re.S)
    assert "hx-confirm=" in form.group(0) and "no longer offered" in form.group(0)
    response = admin_client.post(f"/settings/lists/items/{norway.id}/delete", htmx=True)
    row = _text(response)
    assert response.status_code == 200 and row.lstrip().startswith(f'<tr id="item-{norway.id}"')
    assert "deleted" in row and "Restore" in row
    # Still listed for admins, no longer offered on the company form, still shown on the old record.
    assert "Norway" in _names(app, CrmList.COUNTRY)
    assert "Norway" not in _names(app, CrmList.COUNTRY, include_deleted=False)
    new_form = _text(admin_client.get("/companies/new"))
    assert ">Norway<" not in new_form
    assert "Norway" in _text(admin_client.get(f"/companies/{company_id}"))
    with app.app_context():
        assert db.session.get(Company, company_id).country_id == norway.id
    # Re-adding the name points to restore.
    response = admin_client.post("/settings/lists/country/items", data={"name": "norway"}, htmx=True)
    assert response.status_code == 422 and "restore it instead" in _text(response)
    response = admin_client.post(f"/settings/lists/items/{norway.id}/restore", htmx=True)
    assert response.status_code == 200 and "Delete" in _text(response)
    assert ">Norway</option>" in _text(admin_client.get("/companies/new"))
    assert _actions(app)[-2:] == ["list_item.delete", "list_item.restore"]


def test_plain_user_cannot_touch_lists(app, user_client):
    norway = _item(app, CrmList.COUNTRY, "Norway")
    assert user_client.get("/settings/lists").status_code == 403
    assert user_client.post(f"/settings/lists/items/{norway.id}/delete", htmx=True).status_code == 403
    assert user_client.post("/settings/lists/country/items", data={"name": "Atlantis"}).status_code == 403
    assert _item(app, CrmList.COUNTRY, "Norway").deleted is False
    assert "Atlantis" not in _names(app, CrmList.COUNTRY)


# --- service rules not reachable through the screens -------------------------------------------------------


def test_choices_offer_live_items_and_the_current_one(app_ctx):
    germany = db.session.scalar(select(ListItem).where(ListItem.name == "Germany"))
    list_service.set_deleted(germany, True, actor="test")
    names = [name for _, name in list_service.choices(CrmList.COUNTRY)]
    assert "Germany" not in names and names[0] == "Norway"
    with_current = list_service.choices(CrmList.COUNTRY, current_id=germany.id)
    assert with_current[-1] == (germany.id, "Germany (deleted)")
    retail = db.session.scalar(select(ListItem).where(ListItem.name == "Retail"))
    assert (retail.id, "Retail") not in list_service.choices(CrmList.COUNTRY, current_id=retail.id)


def test_internal_whitespace_is_collapsed_and_unchanged_rename_is_no_change(app_ctx):
    item = list_service.add_item(CrmList.CATEGORY, "  Key   account ", actor="test")
    assert item.name == "Key account"
    before = db.session.scalar(select(AuditEvent.id).order_by(AuditEvent.id.desc()))
    list_service.rename_item(item, "Key account", actor="test")
    assert db.session.scalar(select(AuditEvent.id).order_by(AuditEvent.id.desc())) == before
    with pytest.raises(list_service.ListError):
        list_service.move_item(item, "sideways")
