"""The admin-editable CRM lists (countries, business, category, project status).

Items are never hard-deleted: a soft-deleted item stays on the records that use it but is not offered
for new choices. Names are unique per list (case-insensitively, deleted items included, so restoring
is the way back). Every change is audited in the same transaction.
"""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from portal.extensions import db
from portal.models import CrmList, ListItem
from portal.models.crm import LIST_LABELS
from portal.services import audit

NAME_MAX_LENGTH = 120


class ListError(ValueError):
    """A list change that breaks a rule; the message is shown to the admin next to ``field``."""

    def __init__(self, message: str, field: str | None = "name"):
        super().__init__(message)
        self.field = field


def list_label(list_name: str) -> str:
    return LIST_LABELS[CrmList(list_name)]


def list_names() -> list[CrmList]:
    return list(LIST_LABELS)


def parse_list_name(list_name: str | None) -> CrmList | None:
    """The ``CrmList`` for a name, or None for an unknown one."""
    try:
        return CrmList(list_name)
    except ValueError:
        return None


def items(list_name: str, include_deleted: bool = True) -> list[ListItem]:
    stmt = select(ListItem).where(ListItem.list_name == CrmList(list_name)).order_by(ListItem.rank, ListItem.id)
    if not include_deleted:
        stmt = stmt.where(ListItem.deleted.is_(False))
    return list(db.session.scalars(stmt))


def choices(list_name: str, current_id: int | None = None) -> list[tuple[int, str]]:
    """(id, name) of the items offered for a new choice, plus the record's current item even when deleted."""
    offered = [(item.id, item.name) for item in items(list_name, include_deleted=False)]
    if current_id is not None and all(item_id != current_id for item_id, _ in offered):
        current = db.session.get(ListItem, current_id)
        if current is not None and current.list_name == list_name:
            offered.append((current.id, f"{current.name} (deleted)" if current.deleted else current.name))
    return offered


def _snapshot(item: ListItem) -> dict:
    return {"list": item.list_name, "name": item.name, "rank": item.rank, "deleted": item.deleted}


def _repr(item: ListItem) -> str:
    return f"{list_label(item.list_name)}: {item.name}"


def _check_name(list_name: str, name: str | None, item_id: int | None = None) -> str:
    name = " ".join((name or "").split())
    if not name:
        raise ListError("Enter a name.")
    if len(name) > NAME_MAX_LENGTH:
        raise ListError(f"The name can be at most {NAME_MAX_LENGTH} characters.")
    clash = db.session.scalar(
        select(ListItem).where(ListItem.list_name == list_name, func.lower(ListItem.name) == name.lower())
    )
    if clash is not None and clash.id != item_id:
        if clash.deleted:
            raise ListError(f"“{clash.name}” is already in this list but deleted; restore it instead.")
        raise ListError(f"“{clash.name}” is already in this list.")
    return name


def _commit_or_duplicate() -> None:
    try:
        db.session.commit()
    except IntegrityError:  # a concurrent add of the same name won the race
        db.session.rollback()
        raise ListError("That name is already in this list.") from None


def add_item(list_name: str, name: str, *, actor=None, **ctx) -> ListItem:
    list_name = CrmList(list_name)
    name = _check_name(list_name, name)
    top = db.session.scalar(select(func.max(ListItem.rank)).where(ListItem.list_name == list_name))
    item = ListItem(list_name=list_name, name=name, rank=(top if top is not None else -1) + 1)
    db.session.add(item)
    db.session.flush()
    audit.record("list_item.create", item, object_type="list_item", object_repr=_repr(item),
                 after=_snapshot(item), actor=actor, **ctx)
    _commit_or_duplicate()
    return item


def rename_item(item: ListItem, name: str, *, actor=None, **ctx) -> ListItem:
    name = _check_name(item.list_name, name, item.id)
    if name == item.name:
        return item
    before = _snapshot(item)
    item.name = name
    audit.record("list_item.rename", item, object_type="list_item", object_repr=_repr(item),
                 before=before, after=_snapshot(item), actor=actor, **ctx)
    _commit_or_duplicate()
    return item


def move_in_order(ordered: list, row, direction: str) -> bool:
    """Swap ``row`` with its neighbour above ("up") or below ("down") in ``ordered`` (rows with a ``rank``) and
    renumber every rank 0..n-1, so equal or sparse ranks never block a move; False when it is at that end."""
    index = next(i for i, other in enumerate(ordered) if other.id == row.id)
    target = index - 1 if direction == "up" else index + 1
    if not 0 <= target < len(ordered):
        return False
    ordered[index], ordered[target] = ordered[target], ordered[index]
    for rank, other in enumerate(ordered):
        if other.rank != rank:
            other.rank = rank
    return True


def move_item(item: ListItem, direction: str, *, actor=None, **ctx) -> bool:
    """Swap the item with its neighbour above ("up") or below ("down"); False when it is already at the end.

    Ranks of the whole list are renumbered 0..n-1 first, so equal or sparse ranks never block a move.
    """
    if direction not in ("up", "down"):
        raise ListError("Unknown direction.", None)
    before = _snapshot(item)
    if not move_in_order(items(item.list_name), item, direction):
        return False
    audit.record(f"list_item.move_{direction}", item, object_type="list_item", object_repr=_repr(item),
                 before=before, after=_snapshot(item), actor=actor, **ctx)
    db.session.commit()
    return True


def set_deleted(item: ListItem, deleted: bool, *, actor=None, **ctx) -> ListItem:
    if item.deleted == deleted:
        return item
    before = _snapshot(item)
    item.deleted = deleted
    audit.record("list_item.delete" if deleted else "list_item.restore", item, object_type="list_item",
                 object_repr=_repr(item), before=before, after=_snapshot(item), actor=actor, **ctx)
    db.session.commit()
    return item
