"""A model-based test of the sync engine: edits on both sides, syncs, crashes, and a connector doing the nastiest
legal things (offset paging, repeated / frozen stamps, equal stamps reordered) — no edit may ever be lost.

The promise (docs/sync-engine.md §1): after any interleaving of edits, runs and crashes, every edit either
survives on its side or is the recorded loser of a conflict (a ``SyncChange`` row whose ``old_value`` /
``other_value`` is the overwritten value).

The world
=========
3–6 CRM companies linked to ``Customer`` actors of a :class:`tests.fakes.feed_connector.FeedConnectorService`
served in process (``builtin:``), plus two unlinked actors whose edits move feed positions. Three text fields
mapped both ways (``name``, ``phone``, ``orgnr`` ↔ ``vat_no``), conflict policy **"CRM wins"** (deterministic:
merge.py's docstring, rule 4d). Every edit writes a fresh token (``crm-17``, ``erp-18`` …), so an edit never sets
a field back to an earlier value (the known limit of any three-way merge). Drawn per example: the number of
companies, ``SYNC_PAGE_SIZE`` and ``SYNC_BATCH_SIZE`` (1–3, so paging and batches really happen), the feed mode
(keyset / offset / unpaged), the stamp mode (distinct / one-second resolution / frozen clock) and, for offset and
unpaged feeds, whether equal stamps come in a new order on every call.

Rules: CRM edit of 1–3 fields of a record (ORM save: ``updated_at`` moves like a real save); ERP edit of 1–3
fields (a user of the ERP: a new stamp from the fake's clock); a mass update in the ERP (one field of every
linked actor, in either order); ERP edit of an unlinked actor; time passes (one second); a sync; a sync with a
crash injected at one write boundary — the 1st/2nd SaveActors of the run not sent / applied in the ERP with its
answer lost (``SimulatedCrash``, a BaseException raised by the fake; only drawn while some CRM change is pending,
else there is no SaveActors to crash in) / the N-th (1–25) database commit of the run not done / done (raised
from a SQLAlchemy ``before_commit`` / ``after_commit`` listener). After a
crash the session is thrown away (as with a dead process) and the dead run is failed the way the reaper does it
(``runs.reap_stale`` with a ``now`` an hour on; ``runs.mark_failed`` if it had not even been claimed).
Not modelled: deletions, parent moves (contacts) — the deterministic tests below cover parent moves.

The model and why it is sound
=============================
Per record and field the model keeps ``B`` (the link's base: the value both sides agreed on at the last sync of
that record **that committed**), ``C`` (the CRM value) and ``E`` (the ERP value). User edits set ``C`` or ``E``.
With "CRM wins" and fresh tokens the merge of one record is fully determined: per field, ``m = C`` if ``C == E``
or ``C != B`` (the CRM changed, a conflict if the ERP changed too), else ``m = E``.

"The last sync that committed" is the subtle part. A record's batch is applied in one database transaction (CRM
values, link base and markers, change log) *after* its SaveActors; a crash can therefore leave the ERP written
while the CRM, the base and the cursor are not. Rather than guess where a crash landed, each run's effect is
**observed** (CRM rows, ERP actors, ``Link.base``) and checked to be one of the legal transitions of each
record, all fields of the record together:

* untouched: ``(B, C, E)`` unchanged;
* committed: ``B = C = E = m`` (the ERP holding ``m`` is required: the CRM transaction follows SaveActors);
* only in a crashed run: ``E = m`` with ``B``, ``C`` unchanged (SaveActors applied, the CRM transaction lost).

A run that was not crashed must commit **every** record (``B = C = E = m``) — except while the feed reorders
equal stamps under offset paging: then an actor can be skipped without anything being written (the engine can
only notice an actor read twice, hold its cursor and read the skipped one next run), so "untouched" is legal
there too. The model then follows what was observed. This is slightly weaker than predicting the crash point,
but never flaky, and it still pins every value: nothing but ``m`` may ever appear.

Invariants
----------
* after every run: the transitions above; a run that was not crashed ends ``succeeded``;
* every value the engine overwrote is on record: each ERP overwrite the fake saw (``overwrites``) has a change-log
  row of that actor and field with it as ``old_value`` of a ``to_erp`` write or as the losing ``other_value`` of a
  conflict; each CRM value changed by a run (CRM compared before/after every run) likewise (``to_crm``);
* at teardown faults stop (no crash, no reordering) and two clean runs follow: the first must commit every record
  (both sides and the base hold the model's ``m``), the second must be a no-op (no SaveActors, no CRM or ERP
  change, ``to_crm``/``to_erp`` 0);
* no duplicates: no actor created in the ERP, no company or link added.

Failures 1–4 of the engine's history each break one of these: (1) an offset feed skipping actors behind those
written between pages — a clean run leaves a record uncommitted, or a later clean run cannot see it because the
cursor moved past; (2) a second ERP edit with the synced stamp ignored — same; (3) a crash between SaveActors and
the CRM transaction — an ERP overwrite with no change-log row; (4) parent moves — the deterministic tests.

Running it
==========
``.venv/bin/pytest -q -x tests/integration/test_sync_model.py`` — the CI profile: 40 examples of up to 25 steps
(~10 s for the machine on the 2-core development machine; the 1,200-customer paging test is marked ``slow``).
A long hunt: ``PORTAL_MODEL_EXAMPLES=2000 PORTAL_MODEL_STEPS=40 .venv/bin/pytest -q -x
tests/integration/test_sync_model.py -k machine`` (about 6–8 minutes). A failure prints the minimal sequence of
rules (``state.world(...)``, ``state.crm_edit(...)`` …, ``state.teardown()``) and hypothesis replays it first on
the next run (its example database, ``.hypothesis/``). Shrinking a failure costs a run per attempt (~40 ms
each) and can take hypothesis' five-minute shrinking limit; the printed case is then minimal or close to it.
Every example starts from the emptied database of the test's ``app`` fixture (``fresh_database``), so with
``PORTAL_TEST_DATABASE_URL`` the machine runs against PostgreSQL like the other ``db`` tests.
"""

from __future__ import annotations

import os
from datetime import timedelta

import pytest
from flask import current_app
from hypothesis import HealthCheck, settings
from hypothesis import event as hypothesis_event
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, precondition, rule, run_state_machine_as_test
from sqlalchemy import event, func, select
from sqlalchemy.orm import Session

from portal.database import utcnow
from portal.extensions import db
from portal.models import Company, Connection, Contact, Link, RunStatus, SyncChange, SyncRun
from portal.services.sync import engine, runs
from tests import sync_support as s
from tests.fakes.feed_connector import FEED_MODES, STAMP_MODES, FeedConnectorService, SimulatedCrash

pytestmark = pytest.mark.db

FIELDS = ("name", "phone", "orgnr")  # ERP field keys, mapped both ways
CRM_ATTR = {"name": "name", "phone": "phone", "orgnr": "vat_no"}
MAPPING = {erp: crm for erp, crm in CRM_ATTR.items()}

EXAMPLES = int(os.environ.get("PORTAL_MODEL_EXAMPLES", "40"))
STEPS = int(os.environ.get("PORTAL_MODEL_STEPS", "25"))


# ------------------------------------------------------------------------------------------------ helpers


class CommitCrash:
    """Within the ``with``: the ``n``-th database commit raises SimulatedCrash, ``before`` it happens (the
    transaction is lost) or ``after`` it (it is durable, the process dies right after)."""

    def __init__(self, n: int, when: str):
        self.n, self.when, self.count, self.fired = n, when, 0, False

    def _hook(self, _session) -> None:
        self.count += 1
        if self.count == self.n and not self.fired:
            self.fired = True
            raise SimulatedCrash(f"killed {self.when} commit #{self.n} of the run")

    def __enter__(self):
        event.listen(Session, f"{self.when}_commit", self._hook)
        return self

    def __exit__(self, *exc_info) -> None:
        event.remove(Session, f"{self.when}_commit", self._hook)


class RunResult:
    def __init__(self, run_id: int, outcome=None, crashed: bool = False):
        self.run_id, self.outcome, self.crashed = run_id, outcome, crashed

    @property
    def status(self) -> str:
        return "crashed" if self.crashed else self.outcome.status

    @property
    def counts(self) -> dict:
        return {} if self.outcome is None else dict(self.outcome.counts or {})


def run_sync(cid: int, fake: FeedConnectorService, crash: tuple[str, int] | None = None) -> RunResult:
    """One sync run of ``cid``; with ``crash`` = (point, n) the "process" dies at that write boundary, its session
    is thrown away and the run is failed as the reaper would."""
    run_id = s.run_request(cid)
    hook = None
    if crash is not None:
        point, n = crash
        if point == "save_before":
            fake.crash_on_save(n, "before")
        elif point == "save_after":
            fake.crash_on_save(n, "after")
        else:
            hook = CommitCrash(n, point.split("_")[1])
    try:
        if hook is not None:
            with hook:
                outcome = engine.execute_run(run_id)
        else:
            outcome = engine.execute_run(run_id)
    except SimulatedCrash:
        fake.clear_crash()
        db.session.remove()  # the dead process's session (and its open transaction) is gone
        runs.reap_stale(now=utcnow() + timedelta(hours=1))
        runs.mark_failed(run_id, "killed before it was claimed (test)")  # no-op unless still queued
        dead = db.session.get(SyncRun, run_id)
        # failed — or finished, when the process died right after the commit that finished the run
        assert dead.status not in (RunStatus.QUEUED, RunStatus.RUNNING), dead.status
        db.session.commit()
        return RunResult(run_id, crashed=True)
    fake.clear_crash()
    return RunResult(run_id, outcome)


def crm_snapshot(company_ids: list[int]) -> list[dict]:
    db.session.expire_all()
    rows = {c.id: c for c in db.session.scalars(select(Company).where(Company.id.in_(company_ids)))}
    result = [{f: (getattr(rows[cid], CRM_ATTR[f]) or None) for f in FIELDS} for cid in company_ids]
    db.session.commit()
    return result


def erp_snapshot(fake: FeedConnectorService, keys: list[str]) -> list[dict]:
    return [{f: (fake.values("Customer", key).get(f) or None) for f in FIELDS} for key in keys]


def base_snapshot(link_ids: list[int]) -> list[dict]:
    db.session.expire_all()
    rows = {link.id: link for link in db.session.scalars(select(Link).where(Link.id.in_(link_ids)))}
    result = [{f: (rows[lid].base or {}).get(f) for f in FIELDS} for lid in link_ids]
    db.session.commit()
    return result


def merged(base: dict, crm: dict, erp: dict) -> dict:
    """The merge of one record under "CRM wins" (merge.py rule 4d), every field agreed before."""
    return {f: crm[f] if (crm[f] == erp[f] or crm[f] != base[f]) else erp[f] for f in FIELDS}


def unlogged_erp_overwrites(fake: FeedConnectorService) -> list:
    """The ERP values the engine overwrote that are neither the old value of a logged ERP write nor the loser of a
    logged conflict."""
    rows = db.session.scalars(select(SyncChange).where(SyncChange.erp_actor_type == "Customer")).all()
    logged = set()
    for row in rows:
        if row.direction == "to_erp" and row.old_value is not None:
            logged.add((row.erp_key, row.erp_field_key, row.old_value))
        if row.conflict and row.other_value is not None:
            logged.add((row.erp_key, row.erp_field_key, row.other_value))
    db.session.commit()
    return [o for o in fake.overwrites if o.actor_type == "Customer"
            and (o.erp_key, o.field, "" if o.old is None else str(o.old)) not in logged]


def unlogged_crm_overwrites(overwrites: list[tuple[int, str, str]]) -> list:
    rows = db.session.scalars(select(SyncChange).where(SyncChange.crm_type == "company")).all()
    logged = set()
    for row in rows:
        if row.direction == "to_crm" and row.old_value is not None:
            logged.add((row.crm_id, row.crm_field_key, row.old_value))
        if row.conflict and row.other_value is not None:
            logged.add((row.crm_id, row.crm_field_key, row.other_value))
    db.session.commit()
    return [o for o in overwrites if o not in logged]


def fresh_database() -> None:
    """Empty every table of the app's database and bootstrap it again (as the ``app`` fixture does): one database
    for all the examples of a test, much cheaper than a new app per example."""
    db.session.remove()
    for table in reversed(db.metadata.sorted_tables):
        db.session.execute(table.delete())
    db.session.commit()
    from portal.services.bootstrap import ensure_default_lists, sync_settings

    sync_settings()
    db.session.commit()
    ensure_default_lists()


# ------------------------------------------------------------------------------------------- the machine


class SyncModel(RuleBasedStateMachine):
    def __init__(self):
        super().__init__()
        self.fake = None
        self.ok = False  # False while a step is under way: teardown then only cleans up
        self.token = 0
        self.crm_overwrites: list[tuple[int, str, str]] = []

    # -- setup ------------------------------------------------------------------------------------------

    @initialize(n=st.integers(3, 6), page=st.integers(1, 3), batch=st.integers(1, 3),
                feed=st.sampled_from(FEED_MODES), stamps=st.sampled_from(STAMP_MODES), reorder=st.booleans(),
                seed=st.integers(0, 2**16))
    def world(self, n, page, batch, feed, stamps, reorder, seed):
        fresh_database()
        current_app.config.update(SYNC_PAGE_SIZE=page, SYNC_BATCH_SIZE=batch)
        self.fake = FeedConnectorService(feed=feed, stamps=stamps, reorder=reorder and feed != "keyset",
                                         seed=seed, actor_types=("Customer",))
        self.fake.register_builtin()
        self.cid = s.make_connection(self.fake, policy="crm", mapping=MAPPING)
        self.company_ids, self.keys, self.link_ids = [], [], []
        for r in range(n):
            company_id, key, link_id = s.link_company(self.fake, self.cid, name=f"Company {r}", phone=f"p{r}",
                                                      vat_no=f"v{r}")
            self.company_ids.append(company_id)
            self.keys.append(key)
            self.link_ids.append(link_id)
        self.unlinked = [self.fake.add_actor("Customer", {"name": f"Unlinked {u}"}) for u in range(2)]
        self.C = crm_snapshot(self.company_ids)
        self.E = erp_snapshot(self.fake, self.keys)
        self.B = base_snapshot(self.link_ids)
        assert self.C == self.E == self.B
        self.actors = len(self.fake.all_actors("Customer"))
        hypothesis_event(f"feed={feed}{'+reorder' if self.fake.reorder else ''}, stamps={stamps}")
        self.ok = True

    def _fresh(self, side: str) -> str:
        self.token += 1
        return f"{side}-{self.token}"

    # -- edits ------------------------------------------------------------------------------------------

    @rule(r=st.integers(0, 5), fields=st.sets(st.sampled_from(FIELDS), min_size=1))
    def crm_edit(self, r, fields):
        self.ok = False
        r %= len(self.company_ids)
        values = {f: self._fresh("crm") for f in sorted(fields)}
        s.edit_company(self.company_ids[r], **{CRM_ATTR[f]: v for f, v in values.items()})
        self.C[r].update(values)
        self.ok = True

    @rule(r=st.integers(0, 5), fields=st.sets(st.sampled_from(FIELDS), min_size=1))
    def erp_edit(self, r, fields):
        self.ok = False
        r %= len(self.keys)
        values = {f: self._fresh("erp") for f in sorted(fields)}
        self.fake.erp_edit("Customer", self.keys[r], values)
        self.E[r].update(values)
        self.ok = True

    @rule(field=st.sampled_from(FIELDS), reverse=st.booleans())
    def erp_bulk_edit(self, field, reverse):
        """A mass update in the ERP: one field of every linked actor, one after the other."""
        self.ok = False
        order = range(len(self.keys) - 1, -1, -1) if reverse else range(len(self.keys))
        for r in order:
            value = self._fresh("erp")
            self.fake.erp_edit("Customer", self.keys[r], {field: value})
            self.E[r][field] = value
        self.ok = True

    @rule(u=st.integers(0, 1))
    def erp_edit_unlinked(self, u):
        self.fake.erp_edit("Customer", self.unlinked[u], {"phone": self._fresh("noise")})

    @rule()
    def time_passes(self):
        self.fake.clock.advance(1.0)

    # -- runs -------------------------------------------------------------------------------------------

    @rule()
    def sync(self):
        self.ok = False
        self._run(None)
        self.ok = True

    def _erp_writes_pending(self) -> bool:
        return any(self.C[r] != self.B[r] for r in range(len(self.keys))) if self.fake is not None else False

    @precondition(_erp_writes_pending)
    @rule(when=st.sampled_from(("before", "after")), n=st.integers(1, 2))
    def crashing_save(self, when, n):
        """The process dies at the n-th SaveActors of the run: before it is sent, or after the ERP applied it."""
        self._crash_run((f"save_{when}", n))

    @rule(when=st.sampled_from(("before", "after")), n=st.integers(1, 25))
    def crashing_commit(self, when, n):
        """The process dies at the n-th database commit of the run: before it is done, or right after."""
        self._crash_run((f"commit_{when}", n))

    def _crash_run(self, crash):
        self.ok = False
        result = self._run(crash)
        hypothesis_event(f"{crash[0]}: {'crashed' if result.crashed else 'ran to the end'}")
        self.ok = True

    def _run(self, crash, *, clean: bool = False) -> RunResult:
        before_crm = [dict(v) for v in self.C]
        expected = [merged(self.B[r], self.C[r], self.E[r]) for r in range(len(self.keys))]
        result = run_sync(self.cid, self.fake, crash)
        C, E, B = crm_snapshot(self.company_ids), erp_snapshot(self.fake, self.keys), base_snapshot(self.link_ids)
        may_skip = not clean and self.fake.reorder and self.fake.feed == "offset"
        for r, key in enumerate(self.keys):
            m = expected[r]
            where = (f"record {r} ({key}) after a {'crashed ' if result.crashed else ''}run: before B={self.B[r]} "
                     f"C={self.C[r]} E={self.E[r]}, merge {m}; now B={B[r]} C={C[r]} E={E[r]}")
            committed = C[r] == m and B[r] == m
            assert (C[r], B[r]) in ((self.C[r], self.B[r]), (m, m)), "CRM/base not a legal outcome: " + where
            assert E[r] in (self.E[r], m), "ERP not a legal outcome: " + where
            if committed:
                assert E[r] == m, "committed without the ERP holding the merge: " + where
            if not result.crashed and not may_skip:
                assert B[r] == C[r] == E[r] == m, "a run that was not interrupted left a record unsynced: " + where
            for f in FIELDS:
                if C[r][f] != before_crm[r][f]:
                    self.crm_overwrites.append((self.company_ids[r], CRM_ATTR[f], before_crm[r][f] or ""))
        if not result.crashed:
            assert result.status == RunStatus.SUCCEEDED, (result.status, result.outcome.message)
        self.C, self.E, self.B = C, E, B
        return result

    # -- the end ----------------------------------------------------------------------------------------

    def teardown(self):
        try:
            if self.ok and self.fake is not None:
                self.final_checks()
        finally:
            db.session.remove()

    def final_checks(self):
        self.fake.clear_crash()
        self.fake.reorder = False
        first = self._run(None, clean=True)
        assert first.status == RunStatus.SUCCEEDED
        saves = self.fake.save_calls
        crm, erp = crm_snapshot(self.company_ids), erp_snapshot(self.fake, self.keys)
        second = self._run(None, clean=True)
        assert self.fake.save_calls == saves, "the second clean run sent SaveActors"
        assert crm_snapshot(self.company_ids) == crm and erp_snapshot(self.fake, self.keys) == erp
        assert second.counts.get("to_crm", 0) == 0 and second.counts.get("to_erp", 0) == 0, second.counts
        missing = unlogged_erp_overwrites(self.fake)
        assert not missing, f"ERP values overwritten without a change-log row: {missing}"
        missing = unlogged_crm_overwrites(self.crm_overwrites)
        assert not missing, f"CRM values overwritten without a change-log row: {missing}"
        assert self.fake.created == [] and len(self.fake.all_actors("Customer")) == self.actors
        assert db.session.scalar(select(func.count()).select_from(Company)) == len(self.company_ids)
        assert db.session.scalar(select(func.count()).select_from(Link)) == len(self.link_ids)
        db.session.commit()


MACHINE_SETTINGS = settings(
    max_examples=EXAMPLES, stateful_step_count=STEPS, deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much,
                           HealthCheck.function_scoped_fixture])


def test_sync_machine(app):
    """The state machine above; every example starts from an emptied database of this test's app."""
    with app.app_context():
        run_state_machine_as_test(SyncModel, settings=MACHINE_SETTINGS)


# ------------------------------------------------------------------------------- deterministic regressions


@pytest.fixture
def ctx(app):
    with app.app_context():
        yield app


def _feed_fake(**kwargs) -> FeedConnectorService:
    fake = FeedConnectorService(actor_types=kwargs.pop("actor_types", ("Customer",)), **kwargs)
    fake.register_builtin()
    return fake


@pytest.mark.parametrize("companies, crm_edited, page, batch", [
    (60, 15, 25, 10),
    pytest.param(1200, 300, 500, 200, marks=pytest.mark.slow),
])
def test_offset_feed_with_writes_between_pages_loses_no_erp_edit(ctx, companies, crm_edited, page, batch):
    """Failure 1: every customer edited in the ERP, a quarter also in the CRM (conflicts the CRM wins, so the
    engine writes those actors: they move to the end of an offset feed). After ONE sync every ERP edit without a
    conflict is in the CRM."""
    ctx.config.update(SYNC_PAGE_SIZE=page, SYNC_BATCH_SIZE=batch)
    fake = _feed_fake(feed="offset")
    cid = s.make_connection(fake, policy="crm", mapping=MAPPING)
    linked = [s.link_company(fake, cid, name=f"Company {n}", phone=f"p{n}") for n in range(companies)]
    step = companies // crm_edited
    for n, (company_id, key, _link) in enumerate(linked):
        fake.erp_edit("Customer", key, {"phone": f"erp-{n}"})
        if n % step == 0:
            s.edit_company(company_id, phone=f"crm-{n}")
    outcome = s.run(cid)
    assert outcome.status == RunStatus.SUCCEEDED, outcome.message
    db.session.expire_all()
    phones = dict(db.session.execute(select(Company.id, Company.phone)).all())
    lost = [n for n, (company_id, _k, _l) in enumerate(linked)
            if n % step and phones[company_id] != f"erp-{n}"]
    assert not lost, f"{len(lost)} ERP edits never reached the CRM, e.g. customers {lost[:10]}"
    won = [n for n, (_c, key, _l) in enumerate(linked)
           if n % step == 0 and fake.values("Customer", key)["phone"] != f"crm-{n}"]
    assert not won
    assert s.run(cid).counts.get("to_crm", 0) == 0


@pytest.mark.parametrize("stamps", ["frozen", "seconds"])
def test_an_erp_edit_with_the_synced_stamp_is_picked_up(ctx, stamps):
    """Failure 2: the ERP's stamps have one-second resolution (or its clock is at rest), so an edit right after a
    sync carries the LastModified the link already holds: it must still reach the CRM."""
    fake = _feed_fake(stamps=stamps, step=timedelta(milliseconds=100))
    cid = s.make_connection(fake, policy="crm", mapping=MAPPING)
    company_id, key, link_id = s.link_company(fake, cid, name="Acme AS", phone="1")
    s.edit_company(company_id, phone="2")
    assert s.run(cid).counts.get("to_erp") == 1  # the echo of this write carries stamp S …
    synced = s.get_link(link_id).erp_last_modified
    stamp = fake.erp_edit("Customer", key, {"phone": "3", "orgnr": "NO-3"})  # … and so does this edit
    assert stamp == synced
    outcome = s.run(cid)
    record = s.company(company_id)
    assert (record.phone, record.vat_no) == ("3", "NO-3"), outcome.counts
    assert {(c.crm_field_key, c.old_value, c.new_value) for c in s.changes(outcome.run_id)} == {
        ("phone", "2", "3"), ("vat_no", "", "NO-3")}
    again = s.run(cid)
    assert again.counts.get("to_crm", 0) == 0 and again.counts.get("to_erp", 0) == 0


def _conflict_scenario(fake, name: str, count: int = 20, conflicts: int = 10) -> tuple[int, list]:
    cid = s.make_connection(fake, name=name, policy="crm", mapping=MAPPING)
    linked = [s.link_company(fake, cid, name=f"{name} {n:02d}", phone=f"p{n}") for n in range(count)]
    for n, (company_id, key, _link) in enumerate(linked):
        if n < conflicts:  # both sides changed the phone: the CRM wins, the ERP's value is the loser
            s.edit_company(company_id, phone=f"crm-{n}")
            fake.erp_edit("Customer", key, {"phone": f"erp-{n}"})
        else:
            s.edit_company(company_id, vat_no=f"VAT{n}")
    return cid, linked


def _conflicts(cid: int, linked: list) -> set:
    index = {key: n for n, (_c, key, _l) in enumerate(linked)}
    return {(index[c.erp_key], c.erp_field_key, c.new_value, c.other_value)
            for c in s.changes(connection_id=cid, conflict=True)}


def test_a_crash_between_save_actors_and_the_crm_transaction_keeps_the_conflicts_on_record(ctx):
    """Failure 3: the process dies after the ERP applied a batch's SaveActors, before the CRM transaction. After
    reaping and a clean run, the change log holds exactly the conflicts an uninterrupted twin logs."""
    ctx.config.update(SYNC_BATCH_SIZE=5, SYNC_PAGE_SIZE=7)
    twin_fake = _feed_fake(feed="offset")
    twin, twin_linked = _conflict_scenario(twin_fake, "Twin ERP")
    assert s.run(twin).status == RunStatus.SUCCEEDED
    expected = _conflicts(twin, twin_linked)
    assert len(expected) == 10

    fake = _feed_fake(feed="offset")
    cid, linked = _conflict_scenario(fake, "Crashed ERP")
    for crash_at in (1, 2):  # the first batch, then (in the next run) the second one
        crashed = run_sync(cid, fake, ("save_after", crash_at))
        assert crashed.crashed and fake.overwrites
    recovery = run_sync(cid, fake)
    assert recovery.status == RunStatus.SUCCEEDED, recovery.outcome.message
    assert run_sync(cid, fake).counts.get("to_erp", 0) == 0
    got = _conflicts(cid, linked)
    assert got == expected, f"missing {sorted(expected - got)}, unexpected {sorted(got - expected)}"
    assert len(s.changes(connection_id=cid, conflict=True)) == 10
    assert unlogged_erp_overwrites(fake) == []
    assert [fake.values("Customer", key)["phone"] for _c, key, _l in linked] == [
        twin_fake.values("Customer", key)["phone"] for _c, key, _l in twin_linked]


def _person_world(fake):
    cid = s.make_connection(fake, policy="crm", actor_types=("Customer", "Person"), mapping=MAPPING,
                            mappings={"Person": {"firstname": "first_name", "lastname": "last_name"}})
    first, first_key, _ = s.link_company(fake, cid, name="First AS")
    second, second_key, _ = s.link_company(fake, cid, name="Second AS")
    contact = Contact(first_name="Ada", last_name="Lovelace", company_id=first)
    db.session.add(contact)
    db.session.flush()
    person = fake.add_actor("Person", {"firstname": "Ada", "lastname": "Lovelace"}, parent=("Customer", first_key))
    actor = fake.get_actor("Person", person)
    db.session.add(Link(connection_id=cid, crm_type="contact", crm_id=contact.id, erp_actor_type="Person",
                        erp_key=person, parent_erp_key=first_key, erp_last_modified=actor["LastModified"],
                        base={"firstname": "Ada", "lastname": "Lovelace"}, status="ok", last_synced_at=utcnow(),
                        crm_synced_at=contact.updated_at, last_result="Linked"))
    connection = db.session.get(Connection, cid)
    connection.cursors = {**(connection.cursors or {}), "Person": actor["LastModified"]}
    db.session.commit()
    return cid, contact.id, person, (first, first_key), (second, second_key)


def test_a_person_moved_to_another_customer_in_the_erp_moves_the_contact(ctx):
    """Failure 4: a Person's ParentErpKey changed in the ERP flows like a mapped field: the CRM contact ends up
    under the company linked to the new parent, and the move is logged."""
    fake = _feed_fake(actor_types=("Customer", "Person"))
    cid, contact_id, person, (first, _first_key), (second, second_key) = _person_world(fake)
    fake.erp_move("Person", person, ("Customer", second_key))
    outcome = s.run(cid)
    assert outcome.status == RunStatus.SUCCEEDED, outcome.message
    db.session.expire_all()
    assert db.session.get(Contact, contact_id).company_id == second
    logged = [c for c in s.changes(outcome.run_id) if c.crm_type == "contact" and c.crm_id == contact_id]
    assert [c.direction for c in logged] == ["to_crm"], [(c.direction, c.crm_field_key, c.rule) for c in logged]
    again = s.run(cid)
    assert again.counts.get("to_crm", 0) == 0 and again.counts.get("to_erp", 0) == 0


def test_a_contact_moved_to_another_company_in_the_crm_moves_the_person(ctx):
    """Failure 4, the other way: the contact's company changed in the CRM → the Person's parent in the ERP is the
    customer linked to the new company, and the move is logged."""
    fake = _feed_fake(actor_types=("Customer", "Person"))
    cid, contact_id, person, (_first, first_key), (second, second_key) = _person_world(fake)
    record = db.session.get(Contact, contact_id)
    record.company_id = second
    db.session.commit()
    outcome = s.run(cid)
    assert outcome.status == RunStatus.SUCCEEDED, outcome.message
    assert fake.get_actor("Person", person)["ParentErpKey"] == second_key
    logged = [c for c in s.changes(outcome.run_id) if c.crm_type == "contact" and c.crm_id == contact_id]
    assert [c.direction for c in logged] == ["to_erp"], [(c.direction, c.crm_field_key, c.rule) for c in logged]
    assert any(o.field == "ParentErpKey" and o.old == first_key for o in fake.overwrites)
    again = s.run(cid)
    assert again.counts.get("to_crm", 0) == 0 and again.counts.get("to_erp", 0) == 0
