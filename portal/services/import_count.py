"""Import from ERP: what the importer counts for the run's report (issue #6).

The outcomes per CRM type, the existing records linked, why actors were skipped, the rows that failed and the
values the CRM could not hold (at most ``MAX_REPORTED`` of each listed); :meth:`RunCounts.counts_json` is what the
run stores in ``SyncRun.counts``. :class:`RunCounts` is a mixin of :class:`~portal.services.importer.Importer`."""

from __future__ import annotations

from collections.abc import Sequence

from portal.models import CrmType
from portal.services.import_plan import Planned
from portal.services.import_rules import NewCompany

MAX_REPORTED = 200  # row problems kept in SyncRun.counts (all of them are in the sync log)


class RunCounts:
    """What the importer counts for the run's report; a mixin of ``Importer``, whose state it reads."""

    def count(self, planned: Sequence[Planned]) -> None:
        for p in planned:
            self._count(p)
        seen = set()
        for p in planned:
            target = p.values.get("company_id")
            if p.writes and isinstance(target, NewCompany) and target.id is not None and target.id not in seen:
                seen.add(target.id)
                self.counts[CrmType.COMPANY]["new"] += 1
                self.companies_from_names += 1

    def _count(self, p: Planned) -> None:
        if p.excluded:
            return
        self.counts[p.crm_type][p.outcome] += 1
        if p.matched and p.writes:
            self.linked_existing += 1
        if p.outcome == "skip":
            self.skip_reasons[_reason_kind(p.reason)] += 1
        if p.outcome == "error":
            self.report(p.actor_type, p.key, p.name, p.reason)
        elif p.writes and p.refused:
            self.refused_count += len(p.refused)
            self.refused_records += 1
            if len(self.refused) < MAX_REPORTED:
                self.refused.append({"actor_type": p.actor_type, "erp_key": p.key, "name": p.name,
                                     "message": "; ".join(item.message for item in p.refused),
                                     "fields": [item.crm_key for item in p.refused]})

    def report(self, actor_type: str, erp_key: str, name: str, message: str) -> None:
        self.problem_count += 1
        if len(self.problems) < MAX_REPORTED:
            self.problems.append({"actor_type": actor_type, "erp_key": erp_key, "name": name, "message": message})

    def counts_json(self) -> dict:
        return {
            "by_type": {t: dict(c) for t, c in self.counts.items() if c},
            "new": sum(c["new"] for c in self.counts.values()),
            "updated": sum(c["update"] for c in self.counts.values()),
            "unchanged": sum(c["unchanged"] for c in self.counts.values()),
            "skipped": sum(c["skip"] for c in self.counts.values()),
            "errors": sum(c["error"] for c in self.counts.values()),
            "linked_existing": self.linked_existing,
            "list_items_added": self.items_added,
            "companies_from_names": self.companies_from_names,
            "skip_reasons": dict(self.skip_reasons),
            "problems": list(self.problems),
            "problem_count": self.problem_count,
            # Records imported without some ERP values the CRM cannot hold (one entry per record; the count is
            # of values). Each value is also an error row, with the ERP value, in the sync log.
            "values_refused": list(self.refused),
            "values_refused_count": self.refused_count,
            "values_refused_records": self.refused_records,
        }


def _reason_kind(reason: str) -> str:
    if reason.startswith(("matches the existing", "already linked to the existing")):
        return "duplicate skipped"
    if "company" in reason:
        return "company not in the CRM"
    if "no longer" in reason:
        return "no longer in the ERP"
    return reason[:80]
