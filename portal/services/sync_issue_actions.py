"""What an admin does about open sync issues (Settings → Sync → Issues): Retry now, Uncouple, Ignore and Stop
ignoring — each audited per record. Plain values and models in, an :class:`ActionResult` out; never ``request``.

* **Retry now** makes the link's retry due now. One record is then synced at once through the engine's Sync now
  (``engine.sync_record``, in the calling request); several are left to a sync run queued per connection (the run
  takes every link whose retry is due). A broken link is only checked again by Sync now on that one record.
* **Uncouple** deletes the link exactly like the ERP tab's Disconnect (``links.remove_link``): the connector is not
  called and nothing changes in the ERP or the CRM record.
* **Ignore** stores the issue's text as its fingerprint (``sync_issues``); **Stop ignoring** removes it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import delete, select, update

from portal.database import utcnow
from portal.extensions import db
from portal.models import CRM_TYPE_LABELS, Connection, Link, LinkStatus, SyncIssueIgnore
from portal.services import audit, sync_issues
from portal.services.links import remove_link

MAX_LINKS = 200  # records one action may take (a page holds 25)


@dataclass
class ActionResult:
    level: str  # success | info | warning | error (the toast's)
    message: str
    done: list[int] = field(default_factory=list)  # link ids acted on


def load_links(link_ids) -> list[Link]:
    """The links with these ids that exist, on connections that are not deleted (at most MAX_LINKS)."""
    ids = sorted({int(i) for i in link_ids})[:MAX_LINKS]
    if not ids:
        return []
    return list(db.session.scalars(
        select(Link).join(Connection, Connection.id == Link.connection_id)
        .where(Link.id.in_(ids), Connection.deleted.is_(False)).order_by(Link.id)))


def _repr(link: Link, names: dict) -> str:
    name = names.get((link.crm_type, link.crm_id), f"#{link.crm_id}")
    return f"{CRM_TYPE_LABELS[link.crm_type]} {name} ↔ {link.erp_actor_type} {link.erp_key}"[:254]


def _names(links: list[Link]) -> dict:
    return sync_issues.record_names((link.crm_type, link.crm_id) for link in links)


def _record(action: str, link: Link, names: dict, *, before=None, after=None, actor=None, **ctx) -> None:
    audit.record(action, object_type=link.crm_type, object_id=link.crm_id, object_repr=_repr(link, names),
                 before=before, after={"connection": link.connection.name, "link": link.id, **(after or {})},
                 actor=actor, **ctx)


def _plural(number: int, word: str) -> str:
    return f"{number} {word}{'' if number == 1 else 's'}"


# ---------------------------------------------------------------------------------------------------- retry


def retry(links: list[Link], *, actor=None, **ctx) -> ActionResult:
    """Retry now: one record is synced at once (Sync now), several are queued (a sync run per connection)."""
    if not links:
        return ActionResult("error", "Choose at least one record.")
    names = _names(links)
    now = utcnow()
    db.session.execute(update(Link).where(Link.id.in_([link.id for link in links])).values(retry_at=now)
                       .execution_options(synchronize_session=False))
    for link in links:
        _record("sync_issue.retry", link, names, after={"queued": len(links) > 1}, actor=actor, **ctx)
    single = links[0] if len(links) == 1 else None
    connection_ids = sorted({link.connection_id for link in links})
    broken = sum(1 for link in links if link.status == LinkStatus.BROKEN)
    db.session.commit()
    if single is not None:
        return _sync_one(single.id, names.get((single.crm_type, single.crm_id), f"#{single.crm_id}"), actor)
    return _queue(connection_ids, len(links), broken, actor)


def _sync_one(link_id: int, name: str, actor) -> ActionResult:
    from portal.services.sync import engine, runs

    try:
        result = engine.sync_record(link_id, requested_by=actor)
    except runs.RunBusy as exc:
        db.session.rollback()
        return ActionResult("info", f"{exc} {name} is retried by the next run.", [link_id])
    except runs.RunError as exc:
        db.session.rollback()
        return ActionResult("error", str(exc), [])
    db.session.rollback()
    if result.ok:
        return ActionResult("success", f"{name}: {result.message}", [link_id])
    return ActionResult("error", f"{name}: {result.message}", [link_id])


def _queue(connection_ids: list[int], count: int, broken: int, actor) -> ActionResult:
    from portal.services.sync import runs

    created, refused = [], []
    for connection_id in connection_ids:
        try:
            run, made = runs.request_run(connection_id, kind="sync", trigger="manual", requested_by=actor)
        except runs.RunRefused as exc:
            refused.append(str(exc))
            continue
        if made:
            created.append(run.id)
    runs.submit(created)
    message = f"{_plural(count, 'record')} will be retried by the sync now running."
    if broken:
        message += f" {_plural(broken, 'broken link')}: use Retry now on each to check it again."
    if refused:
        return ActionResult("warning", message + " " + " ".join(refused))
    return ActionResult("success", message)


# ------------------------------------------------------------------------------------------------- uncouple


def uncouple(links: list[Link], *, actor=None, **ctx) -> ActionResult:
    """Delete the links (like the ERP tab's Disconnect), audited per record."""
    if not links:
        return ActionResult("error", "Choose at least one record.")
    from portal.services.erp_tab import forget_live_values

    names = _names(links)
    gone = [(link.id, link.connection_id, link.erp_actor_type, link.erp_key) for link in links]
    db.session.execute(delete(SyncIssueIgnore).where(SyncIssueIgnore.link_id.in_([g[0] for g in gone])))
    for link in links:
        audit.record("sync_issue.uncouple", object_type=link.crm_type, object_id=link.crm_id,
                     object_repr=_repr(link, names),
                     before={"actor": f"{link.erp_actor_type} {link.erp_key}", "connection": link.connection.name},
                     after={"actor": None, "connection": link.connection.name}, actor=actor, **ctx)
        remove_link(link)
    db.session.commit()
    for _id, connection_id, actor_type, erp_key in gone:
        forget_live_values(connection_id, actor_type, erp_key)
    if len(links) == 1:
        link = links[0]
        message = (f"{names.get((link.crm_type, link.crm_id), '#' + str(link.crm_id))} uncoupled from "
                   f"{gone[0][2]} {gone[0][3]}. Nothing was changed in the ERP.")
    else:
        message = f"{_plural(len(links), 'record')} uncoupled. Nothing was changed in the ERP."
    return ActionResult("success", message, [g[0] for g in gone])


# --------------------------------------------------------------------------------------------------- ignore


def ignore(links: list[Link], *, actor=None, **ctx) -> ActionResult:
    """Hide each link's open issue until its text changes."""
    texts = sync_issues.texts_of(link.id for link in links)
    chosen = [link for link in links if link.id in texts]
    if not chosen:
        return ActionResult("error", "Choose at least one record with an open issue.")
    names = _names(chosen)
    label = getattr(actor, "email", None) or (actor if isinstance(actor, str) else "")
    db.session.execute(delete(SyncIssueIgnore).where(SyncIssueIgnore.link_id.in_([link.id for link in chosen])))
    for link in chosen:
        db.session.add(SyncIssueIgnore(link_id=link.id, fingerprint=texts[link.id], user_id=getattr(actor, "id", None),
                                       user_label=label[:254], at=utcnow()))
        _record("sync_issue.ignore", link, names, after={"error": texts[link.id][:500]}, actor=actor, **ctx)
    db.session.commit()
    return ActionResult("success", f"{_plural(len(chosen), 'issue')} ignored until the error changes.",
                        [link.id for link in chosen])


def unignore(links: list[Link], *, actor=None, **ctx) -> ActionResult:
    """Show these links' issues again."""
    ids = [link.id for link in links]
    found = set(db.session.scalars(select(SyncIssueIgnore.link_id).where(SyncIssueIgnore.link_id.in_(ids))))
    chosen = [link for link in links if link.id in found]
    if not chosen:
        return ActionResult("error", "Choose at least one ignored issue.")
    names = _names(chosen)
    db.session.execute(delete(SyncIssueIgnore).where(SyncIssueIgnore.link_id.in_([link.id for link in chosen])))
    for link in chosen:
        _record("sync_issue.unignore", link, names, actor=actor, **ctx)
    db.session.commit()
    return ActionResult("success", f"{_plural(len(chosen), 'issue')} shown again.", [link.id for link in chosen])


ACTIONS = {"retry": retry, "uncouple": uncouple, "ignore": ignore, "unignore": unignore}
