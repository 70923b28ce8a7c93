"""Import from ERP (spec §5, issue #6): starting an import run, executing it in the background, the done page.

The wizard's state is an :class:`ImportRequest` (plain JSON, see ``to_options``); the web layer carries it signed
between steps and stores it in ``SyncRun.options`` when the import starts. An import *is* a ``SyncRun`` of kind
``import``: the partial unique index on ``sync_run`` allows one queued-or-running run per connection, so the run
row is the connection's run lock and the sync engine cannot work on the connection while the import runs (and
vice versa). Automatic sync does not need to be turned off.

Execution (:func:`execute_import`), in batches of ``BATCH_SIZE`` actors:

1. resolve the selection (the chosen keys, or the search re-run server-side for "all results");
2. per batch: ``GetActors`` (no database transaction open) → :meth:`Importer.plan` (a few batched reads:
   links, records, duplicate candidates, parent links, as plain rows; each ERP value converted through its field's
   prepared conversions, ``portal.services.import_convert``) → :meth:`Importer.apply` (records, links, list items,
   ``SyncChange`` rows, in bulk: ``portal.services.import_write``; progress) → one commit. A record and its link
   are always committed together;
3. for companies "with their persons": the persons of the imported companies are found with
   ``SearchActorsAdvanced(ParentErpKey oneof …)`` (or ``SearchActorByParent`` when a connector does not support
   that) and imported the same way, after the companies, so they land under their company.

A connector failure stops the run: what was committed stays (records and their links), the remaining actors are
reported, and running the import again completes it: linked actors are found through their link and updated,
never duplicated.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError

from portal.connectors.client import ConnectorError
from portal.database import utcnow
from portal.extensions import db
from portal.models import (
    CRM_MODELS,
    ActorType,
    Connection,
    CrmType,
    Link,
    RunKind,
    RunStatus,
    SyncChange,
    SyncRun,
    User,
)
from portal.services.connectors import client_for
from portal.services.import_plan import Planned, TypeSpec
from portal.services.import_preview import find_persons, selected_keys
from portal.services.import_settings import (
    ImportProblem,
    ImportRequest,
    check_settings,
    get_import_connection,
    get_import_type,
)
from portal.services.import_write import RULE_NEW, RULE_UPDATED
from portal.services.importer import Importer
from portal.services.sync import runs

log = logging.getLogger(__name__)

BATCH_SIZE = 200  # actors per GetActors call and per database transaction
MAX_EXPLICIT_KEYS = 2000  # rows ticked one by one; beyond that use "all results"


class RunBusy(ImportProblem):
    """Another run (a sync or an import) holds the connection's run lock."""

    def __init__(self, run: SyncRun):
        super().__init__(runs.describe_busy(run))
        self.run = run


def start_import(connection: Connection, request: ImportRequest, *, actor: User | None = None,
                 request_id: str = "", ip: str = "") -> SyncRun:
    """Queue the import (taking the connection's run lock) and hand it to the background worker.
    Raises RunBusy when a sync or another import is active on the connection."""
    from portal.services import audit

    if not request.all_results and not request.keys:
        raise ImportProblem("Select at least one actor to import.")
    if len(request.keys) > MAX_EXPLICIT_KEYS:
        raise ImportProblem(f"Tick at most {MAX_EXPLICIT_KEYS} rows, or select all results.")
    request.settings.validate()
    check_settings(connection, request)
    options = request.to_options()
    try:
        run, created = runs.request_run(connection.id, kind=RunKind.IMPORT, trigger="manual", requested_by=actor,
                                        options=options)
    except runs.RunError as exc:
        raise ImportProblem(str(exc)) from exc
    if not created:
        raise RunBusy(run)
    audit.record("import.start", connection, after={"run": run.id, "actor_type": request.actor_type,
                                                    "selection": "all results" if request.all_results
                                                    else f"{len(request.keys)} actor(s)",
                                                    "excluded": len(request.excluded),
                                                    "settings": request.settings.to_dict()},
                 actor=actor, request_id=request_id, ip=ip)
    db.session.commit()
    submit(run.id)
    return run


def submit(run_id: int) -> bool:
    """Give the run to the scheduler of this process (jobs.tasks.run_cycle → engine.execute_run → execute_import);
    without one, the dispatcher sweep picks the queued run up."""
    return runs.submit([run_id])


def rerun(run: SyncRun, *, actor: User | None = None, request_id: str = "", ip: str = "") -> SyncRun:
    """Run a finished import again with the same options (safe: linked actors are updated, never duplicated)."""
    request = ImportRequest.from_options(run.options)
    connection = get_import_connection(run.connection_id, actor)
    get_import_type(connection, request.actor_type)
    return start_import(connection, request, actor=actor, request_id=request_id, ip=ip)


class _RunState:
    """Progress and counts of the running import, written with each batch (same transaction)."""

    def __init__(self, run_id: int, importer: Importer):
        self.run_id = run_id
        self.importer = importer

    def write(self, message: str | None = None) -> None:
        """Progress + heartbeat, in the batch's transaction; raises RunAbandoned when the reaper gave the run up
        (the batch is then rolled back: nothing is written by a run that no longer holds the lock)."""
        imp = self.importer
        values = dict(progress_done=imp.done, progress_total=max(imp.total, imp.done), heartbeat_at=utcnow(),
                      counts=imp.counts_json())
        if message is not None:
            values["message"] = message
        result = db.session.execute(update(SyncRun).where(SyncRun.id == self.run_id,
                                                          SyncRun.status == RunStatus.RUNNING).values(**values)
                                    .execution_options(synchronize_session=False))
        if result.rowcount != 1:
            raise RunAbandoned()


class RunAbandoned(Exception):
    """The run is no longer 'running' (the reaper failed it): stop without writing more."""


def execute_import(run_id: int) -> str | None:
    """Run a queued import (the background job's entry point; engine.execute_run hands kind 'import' runs here).
    Returns the final status, or None when the run could not be claimed (gone, taken or finished)."""
    run = db.session.get(SyncRun, run_id)
    if run is None or run.kind != RunKind.IMPORT:
        db.session.rollback()
        return None
    db.session.commit()
    if not runs.claim(run_id):
        return None
    run = db.session.get(SyncRun, run_id)
    connection = db.session.get(Connection, run.connection_id)
    try:
        request = ImportRequest.from_options(run.options or {})
        if connection is None or connection.deleted:
            raise ImportProblem("The connection no longer exists.")
    except (ImportProblem, KeyError, ValueError, TypeError) as exc:
        _finish(run_id, RunStatus.FAILED, f"The import could not start: {exc}", {}, error=str(exc))
        return RunStatus.FAILED
    client = client_for(connection.connector)
    importer = Importer(connection, request, run_id=run_id, user_id=run.requested_by_id, client=client)
    state = _RunState(run_id, importer)
    remaining: list[str] = []
    persons_pending = False
    error_message = ""
    try:
        spec = importer.spec_for(request.actor_type)
        if spec is None:
            raise ImportProblem(f"{request.actor_type} actors are no longer set up to sync to the CRM.")
        check_settings(connection, request)
        db.session.commit()
        importer.fetch_list_texts(client)
        keys = [k for k in selected_keys(connection, request, client)
                if not request.is_excluded(request.actor_type, k)]
        importer.total = len(keys)
        state.write(f"Importing {len(keys)} {request.actor_type} actor(s)")
        db.session.commit()
        remaining = list(keys)
        if spec.crm_type == CrmType.CONTACT:
            _import_persons(importer, state, spec, keys, remaining)
        else:
            _import_batches(importer, state, spec, keys, remaining)
            person_spec = importer.spec_for(ActorType.PERSON)
            if spec.crm_type == CrmType.COMPANY and request.settings.include_persons and person_spec is not None:
                persons_pending = True
                db.session.commit()
                persons = find_persons(client, importer.guid, request.actor_type, keys, person_spec.field_keys[:1])
                person_keys = [a["ErpKey"] for a in persons
                               if not request.is_excluded(ActorType.PERSON, a["ErpKey"])]
                importer.total += len(person_keys)
                remaining = list(person_keys)
                state.write(f"Importing {len(person_keys)} person(s) of the imported companies")
                db.session.commit()
                _import_batches(importer, state, person_spec, person_keys, remaining)
                persons_pending = False
    except ConnectorError as exc:
        db.session.rollback()
        error_message = f"The connector failed: {exc.user_message}"
        log.warning("import run %s stopped: %s (%s)", run_id, exc.user_message, exc.tech_message)
    except ImportProblem as exc:
        db.session.rollback()
        error_message = exc.message
    except RunAbandoned:
        db.session.rollback()
        log.warning("import run %s was given up by the reaper; stopping", run_id)
        return RunStatus.FAILED
    except Exception:
        db.session.rollback()
        log.exception("import run %s failed", run_id)
        error_message = "The import failed unexpectedly; the error has been logged."
    finally:
        client.close()
    counts = importer.counts_json()
    counts["remaining"] = len(remaining) if error_message else 0
    counts["remaining_keys"] = remaining[:50] if error_message else []
    if client.warnings:
        counts["warnings"] = sorted({text for _m, text in client.warnings})[:5]
    written = counts["new"] + counts["updated"] + counts["unchanged"]
    if error_message:
        status = RunStatus.PARTIAL if (written or importer.done) else RunStatus.FAILED
        message = error_message
        if remaining or persons_pending:
            what = f"{len(remaining)} actor(s) were" if remaining else "The persons of the companies were"
            message += (f" {what} not imported; run the import again to complete it (what was imported is "
                        "linked and will be updated, not duplicated).")
    elif counts["errors"] or counts["values_refused_count"]:
        status = RunStatus.PARTIAL
        parts = [f"{counts['errors']} row error(s)"] if counts["errors"] else []
        if counts["values_refused_count"]:
            parts.append(f"{counts['values_refused_count']} ERP value(s) the CRM cannot hold left out of "
                         f"{counts['values_refused_records']} record(s) (see the sync log)")
        message = f"Imported with {' and '.join(parts)}."
    else:
        status = RunStatus.SUCCEEDED
        message = "Import finished."
    message += (f" {counts['new']} new, {counts['updated']} updated, {counts['unchanged']} unchanged, "
                f"{counts['skipped']} skipped.")
    _finish(run_id, status, message, counts, done=importer.done, total=max(importer.total, importer.done),
            error=error_message, seconds=client.seconds)
    if counts["new"] >= ANALYZE_AFTER_NEW:
        refresh_statistics()
    return status


ANALYZE_AFTER_NEW = 1000  # new records from which an import refreshes PostgreSQL's planner statistics


def refresh_statistics() -> None:
    """PostgreSQL: ANALYZE the tables a large import filled. Until autovacuum gets to them (up to a minute or
    more), the planner takes just-filled tables for nearly empty and a sync right after the import walks every
    link for each batch — measured: 385 ms instead of 0.2 ms a batch SELECT at 10,000 links. SQLite: nothing."""
    if db.engine.dialect.name != "postgresql":
        return
    try:
        with db.engine.connect() as conn:
            conn.exec_driver_sql("ANALYZE link, company, contact, project, sync_change")
            conn.commit()
    except Exception:  # statistics are an optimisation: autovacuum gathers them anyway
        log.exception("could not refresh the planner statistics after an import")


def _finish(run_id: int, status: str, message: str, counts: dict, *, done: int | None = None,
            total: int | None = None, error: str = "", seconds: float | None = None) -> None:
    runs.finish(run_id, status, message=message, error=error, counts=counts, connector_seconds=seconds,
                progress_done=done, progress_total=total)


def _import_batches(importer: Importer, state: _RunState, spec: TypeSpec, keys: Sequence[str],
                    remaining: list[str]) -> None:
    client, guid = importer.client, importer.guid
    for start in range(0, len(keys), BATCH_SIZE):
        batch = list(keys[start:start + BATCH_SIZE])
        db.session.commit()  # nothing open while the connector works
        actors = client.get_actors(guid, spec.actor_type, batch, spec.field_keys)
        _write_batch(importer, state, spec, batch, actors)
        del remaining[:len(batch)]


def _import_persons(importer: Importer, state: _RunState, spec: TypeSpec, keys: Sequence[str],
                    remaining: list[str]) -> None:
    """Persons chosen directly: per batch, their companies that are not linked yet are imported first (policy
    "import_company"), then the persons, under them."""
    client, guid = importer.client, importer.guid
    for start in range(0, len(keys), BATCH_SIZE):
        batch = list(keys[start:start + BATCH_SIZE])
        db.session.commit()
        actors = client.get_actors(guid, spec.actor_type, batch, spec.field_keys)
        if importer.settings.person_policy == "import_company":
            wanted = {(a.get("ParentActorType") or "", a.get("ParentErpKey") or "") for a in actors}
            wanted = {(t, k) for t, k in wanted if k and t in importer.specs
                      and importer.specs[t].crm_type == CrmType.COMPANY}
            linked = set()
            if wanted:
                linked = {(t, k) for t, k in db.session.execute(select(Link.erp_actor_type, Link.erp_key).where(
                    Link.connection_id == importer.connection_id, Link.crm_type == CrmType.COMPANY,
                    Link.erp_key.in_(sorted({k for _t, k in wanted})))).all()}
            missing = sorted(wanted - linked)
            for parent_type in sorted({t for t, _k in missing}):
                parent_spec = importer.specs[parent_type]
                parent_keys = [k for t, k in missing if t == parent_type]
                db.session.commit()
                companies = client.get_actors(guid, parent_type, parent_keys, parent_spec.field_keys)
                _write_batch(importer, state, parent_spec, [], companies)
        _write_batch(importer, state, spec, batch, actors)
        del remaining[:len(batch)]


def _write_batch(importer: Importer, state: _RunState, spec: TypeSpec, batch: Sequence[str],
                 actors: list[dict]) -> None:
    """Plan and write one batch in one transaction. When another writer took a link or list item meanwhile (a
    unique index says no), plan again once, then fall back to one actor per transaction."""
    found = {a["ErpKey"] for a in actors}
    missing = [k for k in batch if k not in found]
    written = False
    for attempt in (1, 2):
        planned: list[Planned] = []
        try:
            planned = importer.plan(spec, actors)
            importer.apply(planned)
        except IntegrityError:
            db.session.rollback()
            importer.release(planned)
            importer._load_crm_lists()
            log.info("import batch of %d %s met a concurrent change (attempt %d)", len(actors), spec.actor_type,
                     attempt)
            continue
        importer.count(planned)
        _batch_done(importer, state, spec, batch, missing)
        importer.after_commit(planned)
        written = True
        break
    if written:
        return
    for actor in actors:
        planned = []
        try:
            planned = importer.plan(spec, [actor])
            importer.apply(planned)
            db.session.commit()
        except IntegrityError:
            db.session.rollback()
            importer.release(planned)
            importer.counts[spec.crm_type]["error"] += 1
            importer.report(spec.actor_type, actor["ErpKey"], actor["ErpKey"],
                            "It was linked or changed by someone else during the import; run the import again.")
        else:
            importer.count(planned)
            importer.after_commit(planned)
    _batch_done(importer, state, spec, batch, missing)


def _batch_done(importer: Importer, state: _RunState, spec: TypeSpec, batch: Sequence[str],
                missing: Sequence[str]) -> None:
    """Count the batch's actors the ERP no longer has, move the progress on and commit."""
    _report_missing(importer, spec, missing)
    importer.done += len(batch)
    state.write()
    db.session.commit()


def _report_missing(importer: Importer, spec: TypeSpec, missing: Sequence[str]) -> None:
    for key in missing:
        importer.counts[spec.crm_type]["skip"] += 1
        importer.skip_reasons["no longer in the ERP"] += 1
        importer.report(spec.actor_type, key, key, "It is no longer in the ERP.")


# --------------------------------------------------------------------------------------------- done page


@dataclass
class RecordRef:
    crm_type: str
    id: int
    name: str


def run_records(run: SyncRun, which: str, page: int = 1, per_page: int = 50) -> tuple[list[RecordRef], int]:
    """The records an import created (``which='new'``) or updated (``'updated'``), paged, from the sync log."""
    rule = RULE_NEW if which == "new" else RULE_UPDATED
    base = (select(SyncChange.crm_type, SyncChange.crm_id)
            .where(SyncChange.run_id == run.id, SyncChange.direction == "to_crm", SyncChange.rule == rule)
            .distinct())
    total = db.session.scalar(select(func.count()).select_from(base.subquery())) or 0
    rows = db.session.execute(base.order_by(SyncChange.crm_type, SyncChange.crm_id)
                              .limit(per_page).offset((max(page, 1) - 1) * per_page)).all()
    refs = []
    by_type: dict[str, list[int]] = {}
    for crm_type, crm_id in rows:
        by_type.setdefault(crm_type, []).append(crm_id)
    names: dict[tuple[str, int], str] = {}
    for crm_type, ids in by_type.items():
        model = CRM_MODELS[crm_type]
        for record in db.session.scalars(select(model).where(model.id.in_(ids))):
            names[(crm_type, record.id)] = record.display_name
    for crm_type, crm_id in rows:
        if (crm_type, crm_id) in names:
            refs.append(RecordRef(crm_type, crm_id, names[(crm_type, crm_id)]))
    return refs, total


def import_runs(limit: int = 20) -> list[SyncRun]:
    return list(db.session.scalars(select(SyncRun).where(SyncRun.kind == RunKind.IMPORT)
                                   .order_by(SyncRun.id.desc()).limit(limit)))


def _register_with_engine() -> None:
    """The sync engine executes runs of kind 'import' by calling execute_import (engine.register_kind)."""
    from portal.services.sync import engine

    engine.register_kind(RunKind.IMPORT, execute_import)


_register_with_engine()
