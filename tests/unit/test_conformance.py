"""The conformance kit against the fake connector: it passes the good fake and FAILs (or WARNs) broken variants
with a reason a connector author can act on.

Each broken variant is a small subclass of ``FakeConnectorService`` served by its own ``FakeConnector`` on
127.0.0.1, so the kit goes through the real client and HTTP exactly as ``flask connector check`` does.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from portal.connectors.client import ConnectorClient
from portal.connectors.conformance import (
    FAIL,
    PASS,
    SKIP,
    WARN,
    CheckResult,
    convert_config_value,
    format_table,
    has_failures,
    metadata_problems,
    parse_last_modified,
    run_checks,
    value_problem,
)
from portal.connectors.protocol import ok_response
from portal.connectors.service import ProtocolError
from tests.fakes.connector_app import FakeClock, FakeConnector, FakeConnectorService, format_stamp, parse_stamp

INFO = {"Company": "ACME", "ApiKey": "k3y"}
TYPES = ("Customer", "Supplier", "Person", "Project")


def seed(fake: FakeConnector) -> dict[str, str]:
    acme = fake.add_actor("Customer", {"name": "Acme AS", "country": "NO", "employees": 12, "active": True,
                                       "creditlimit": 1000.5, "founded": "2001-05-01", "email": "post@acme.example"})
    fake.add_actor("Customer", {"name": "Beta AB", "country": "SE", "employees": 3})
    fake.add_actor("Customer", {"name": "Gamma Oy", "country": "FI"})
    fake.add_actor("Supplier", {"name": "Delta GmbH", "country": "DE"})
    fake.add_actor("Supplier", {"name": "Epsilon BV"})
    fake.add_actor("Person", {"firstname": "Ann", "lastname": "Lee"}, parent=("Customer", acme))
    fake.add_actor("Person", {"firstname": "Bo", "lastname": "Ek"}, parent=("Customer", acme))
    fake.add_actor("Project", {"name": "Rollout", "status": "active", "budget": 5.5, "startdate": "2026-01-01"})
    fake.add_actor("Project", {"name": "Upgrade", "status": "planned"})
    return {"acme": acme}


def check(service: FakeConnectorService | None = None, *, config: dict | None = None, prepare=None,
          **kwargs) -> tuple[dict[str, CheckResult], list[CheckResult], FakeConnector]:
    """Run the kit against a freshly seeded fake; returns (results by name, results in order, the fake)."""
    with FakeConnector(service=service) as fake:
        seed(fake)
        if prepare is not None:
            prepare(fake)
        with ConnectorClient(fake.url, retries=0, timeout=5) as client:
            results = run_checks(client, INFO if config is None else config, **kwargs)
    return {r.name: r for r in results}, results, fake


def failures(results: list[CheckResult]) -> dict[str, str]:
    return {r.name: r.reason for r in results if r.status == FAIL}


# --- broken connectors ----------------------------------------------------------------------------------------


class CounterLastModified(FakeConnectorService):
    """LastModified is a per-record version counter ("1", "2", …) instead of a global stamp."""

    def _present(self, stored: dict, field_keys: list[str]) -> dict:
        actor = super()._present(stored, field_keys)
        actor["LastModified"] = str(stored.get("_version", 1))
        return actor

    def SaveActors(self, body: dict) -> dict:
        for actor in body.get("Actors") or []:
            stored = self.actors.get(actor.get("ActorType"), {}).get(actor.get("ErpKey"))
            if stored is not None:
                stored["_version"] = stored.get("_version", 1) + 1
        return super().SaveActors(body)


class NotInclusive(FakeConnectorService):
    """GetActorsByTimestamp compares with > instead of >=."""

    def GetActorsByTimestamp(self, body: dict) -> dict:
        since = body.get("UpdatedOnOrAfter")
        if since:
            body = {**body, "UpdatedOnOrAfter": format_stamp(parse_stamp(since) + timedelta(microseconds=1))}
        return super().GetActorsByTimestamp(body)


class ReturnsUnknownKeys(FakeConnectorService):
    """GetActors answers an empty actor for keys it does not know instead of leaving them out."""

    def GetActors(self, body: dict) -> dict:
        answer = super().GetActors(body)
        found = {a["ErpKey"] for a in answer["Actors"]}
        for key in body.get("ErpKeys") or []:
            if key not in found:
                answer["Actors"].append({"ActorType": body["ActorType"], "ErpKey": key, "LastModified": "",
                                         "ParentActorType": "", "ParentErpKey": "", "FieldValues": {}})
        return answer


class BlankSearchFindsNothing(FakeConnectorService):
    def SearchActors(self, body: dict) -> dict:
        if not (body.get("SearchText") or "").strip():
            self._guid(body)
            return ok_response(Actors=[])
        return super().SearchActors(body)


class NoIsOk(FakeConnectorService):
    def handle(self, method: str, body: dict) -> dict:
        answer = super().handle(method, body)
        answer.pop("IsOk", None)
        return answer


class WrongValueTypes(FakeConnectorService):
    """Integer and Checkbox values sent as text (as a SOAP bridge that forgot to convert would)."""

    def _present(self, stored: dict, field_keys: list[str]) -> dict:
        actor = super()._present(stored, field_keys)
        values = actor["FieldValues"]
        if values.get("employees") is not None:
            values["employees"] = str(values["employees"])
        if values.get("active") is not None:
            values["active"] = "[I:1]" if values["active"] else "[I:0]"
        return actor


class IgnoresIdempotencyKey(FakeConnectorService):
    def CreateActor(self, body: dict) -> dict:
        return super().CreateActor({k: v for k, v in body.items() if k != "IdempotencyKey"})


class AcceptsAnyGuid(FakeConnectorService):
    def GetSupportedActorTypes(self, body: dict) -> dict:
        return ok_response(Items=list(self.actor_types))


class CursorIgnored(FakeConnectorService):
    def GetActorsByTimestamp(self, body: dict) -> dict:
        return super().GetActorsByTimestamp({k: v for k, v in body.items() if k != "Cursor"})


class PageWithoutCursor(FakeConnectorService):
    def GetActorsByTimestamp(self, body: dict) -> dict:
        answer = super().GetActorsByTimestamp(body)
        answer["NextCursor"] = None
        return answer


class LeanEnvelope(FakeConnectorService):
    def handle(self, method: str, body: dict) -> dict:
        answer = super().handle(method, body)
        if answer.get("IsOk") and method in ("GetList", "GetActors"):
            answer.pop("TechExplanation", None)
            answer["State"] = "Fine"
        return answer


class BadFieldMetadata(FakeConnectorService):
    def GetSupportedActorTypeFields(self, body: dict) -> dict:
        answer = super().GetSupportedActorTypeFields(body)
        if body.get("ActorType") == "Customer":
            answer["FieldMetaDataObjects"][0]["FieldType"] = "String"
            answer["FieldMetaDataObjects"][1]["Access"] = "Hidden"
            del answer["FieldMetaDataObjects"][2]["Rank"]
        return answer


class ExtraActorType(FakeConnectorService):
    def GetSupportedActorTypes(self, body: dict) -> dict:
        answer = super().GetSupportedActorTypes(body)
        answer["Items"].append("Company")
        return answer


class NaiveTimestamps(FakeConnectorService):
    def _present(self, stored: dict, field_keys: list[str]) -> dict:
        actor = super()._present(stored, field_keys)
        actor["LastModified"] = actor["LastModified"].rstrip("Z")
        return actor


class SaveKeepsLastModified(FakeConnectorService):
    def SaveActors(self, body: dict) -> dict:
        before = {(a.get("ActorType"), a.get("ErpKey")): self.actors.get(a.get("ActorType"), {})
                  .get(a.get("ErpKey"), {}).get("LastModified") for a in body.get("Actors") or []}
        answer = super().SaveActors(body)
        for actor in answer.get("Actors", []):
            old = before.get((actor["ActorType"], actor["ErpKey"]))
            if old:
                self.actors[actor["ActorType"]][actor["ErpKey"]]["LastModified"] = old
                actor["LastModified"] = old
        return answer


class OffsetPaging(FakeConnectorService):
    """GetActorsByTimestamp pages by OFFSET (legal): NextCursor is an index into the feed as it is at each call, so
    an actor written between two pages moves to the end and the rest shift one place forward."""

    def GetActorsByTimestamp(self, body: dict) -> dict:
        limit, cursor = body.get("Limit"), body.get("Cursor")
        answer = super().GetActorsByTimestamp({k: v for k, v in body.items() if k not in ("Limit", "Cursor")})
        if not limit:
            return answer
        start, feed = int(cursor or 0), answer["Actors"]
        answer["Actors"] = feed[start:start + limit]
        answer["NextCursor"] = str(start + limit) if start + limit < len(feed) else None
        return answer


class SkipsUnchangedSaves(OffsetPaging):
    """SaveActors writes nothing (LastModified stays) when no value changes, as an ERP that compares first does."""

    def SaveActors(self, body: dict) -> dict:
        unchanged = []
        for actor in body.get("Actors") or []:
            stored = self.actors.get(actor.get("ActorType"), {}).get(actor.get("ErpKey"))
            values = actor.get("FieldValues") or {}
            if stored is not None and all(stored["FieldValues"].get(k) == v for k, v in values.items()):
                unchanged.append(stored)
        if unchanged and len(unchanged) == len(body.get("Actors") or []):
            self._guid(body)
            return ok_response(Actors=[self._present(a, []) for a in unchanged])
        return super().SaveActors(body)


class NotFoundForUnknownKeys(FakeConnectorService):
    """GetActors answers the error NOT_FOUND when a key is unknown (accepted) instead of leaving the key out."""

    def GetActors(self, body: dict) -> dict:
        stored = self.actors.get(body.get("ActorType"), {})
        missing = [k for k in body.get("ErpKeys") or [] if k not in stored]
        if missing:
            raise ProtocolError(f"No such record: {', '.join(missing)}.", error_code="NOT_FOUND")
        return super().GetActors(body)


class SecondClock(FakeClock):
    """One-second resolution and a clock at rest: every write of a test run gets the same LastModified."""

    def __init__(self):
        super().__init__(start=datetime(2026, 1, 1, 8, 0, 0), step=timedelta(microseconds=1))

    def tick(self) -> str:
        return super().tick()[:19] + "Z"


class ParentIgnored(FakeConnectorService):
    """SearchActorByParent lists every person, whatever the parent."""

    def SearchActorByParent(self, body: dict) -> dict:
        return self.SearchActors(body)


class LeavesOutBlankValues(FakeConnectorService):
    def _present(self, stored: dict, field_keys: list[str]) -> dict:
        actor = super()._present(stored, field_keys)
        actor["FieldValues"] = {k: v for k, v in actor["FieldValues"].items() if v is not None}
        return actor


# --- the good fake --------------------------------------------------------------------------------------------


def test_the_good_fake_passes_every_check():
    by_name, results, fake = check()
    assert not has_failures(results), format_table(results)
    assert [r.name for r in results if r.status == WARN] == []
    names = [r.name for r in results]
    assert names[:7] == ["GetConfigData", "TestConfigData", "SaveConnection", "TestConnection",
                         "Unknown ConnectionGuid", "GetList (zero GUID)", "GetSupportedActorTypes"]
    assert names[-2:] == ["DeleteConnection", "Response members"]
    for actor_type in TYPES:
        for name in ("GetSupportedActorTypeFields", "GetSearchableFields", "GetActorsByTimestamp (all)",
                     "LastModified format", "FieldValues types", "GetActorsByTimestamp inclusive",
                     "GetActorsByTimestamp paging", "GetActors", "SearchActors (blank)", "SearchActorsAdvanced",
                     "CreateActor", "CreateActor idempotent", "SaveActors", "GetActorsByTimestamp paging under writes"):
            assert by_name[f"{actor_type}: {name}"].status == PASS, (actor_type, name, format_table(results))
        assert by_name[f"{actor_type}: GetActorsByTimestamp paging under writes"].reason.startswith(
            "feed is stable under writes between pages (keyset-like): re-saved ")
    assert by_name["Person: SearchActorByParent"].status == PASS
    assert by_name["Person: GetList/GetListItems"].status == SKIP  # the fake's persons have no list field
    assert "ProjectStatus" in by_name["Project: GetList/GetListItems"].reason
    assert "Countries (checked with Customer)" in by_name["Supplier: GetList/GetListItems"].reason
    assert "DefaultValue used for PageSize" in by_name["GetConfigData"].reason
    # one record per type was created (the repeated create was answered from the IdempotencyKey) …
    assert sorted(a["ActorType"] for a in fake.service.created) == sorted(TYPES)
    person = next(a for a in fake.service.created if a["ActorType"] == "Person")
    customer = next(a for a in fake.service.created if a["ActorType"] == "Customer")
    assert (person["ParentActorType"], person["ParentErpKey"]) == ("Customer", customer["ErpKey"])
    # … and the connection the kit saved is gone again
    assert fake.connections == {}
    assert all(r.seconds >= 0 for r in results)


def test_no_write_leaves_the_erp_alone():
    by_name, results, fake = check(write=False)
    assert not has_failures(results), format_table(results)
    assert fake.service.created == []
    assert fake.calls_to("CreateActor") == fake.calls_to("SaveActors") == []
    assert not any("CreateActor" in name or "SaveActors" in name or "under writes" in name for name in by_name)


def test_only_the_chosen_actor_types_are_checked():
    by_name, results, fake = check(actor_types=["Customer"], write=False)
    assert not has_failures(results)
    assert {name.split(":")[0] for name in by_name if ":" in name} == {"Customer"}
    assert {body["ActorType"] for body in fake.calls_to("GetActorsByTimestamp")} == {"Customer"}


def test_an_unsupported_actor_type_that_was_asked_for_fails():
    by_name, results, _ = check(actor_types=["Partner", "Project"], write=False)
    assert by_name["Partner: supported"].status == FAIL
    assert "GetSupportedActorTypes offers only Customer, Supplier, Person, Project" in by_name[
        "Partner: supported"].reason
    assert by_name["Project: GetActors"].status == PASS


def test_a_person_without_an_existing_parent_gets_the_created_customer():
    def no_persons(fake):
        for person in fake.service.all_actors("Person"):
            fake.delete_actor("Person", person["ErpKey"])

    by_name, results, fake = check(prepare=no_persons)
    assert not has_failures(results), format_table(results)
    # SearchActorByParent had nothing to search in the read phase, so it ran with the created person
    names = [r.name for r in results]
    assert names.index("Person: SearchActorByParent") > names.index("Person: CreateActor")
    assert by_name["Person: SearchActorByParent"].status == PASS
    assert names.count("Person: SearchActorByParent") == 1


def test_an_empty_erp_skips_what_needs_data():
    with FakeConnector() as fake, ConnectorClient(fake.url, retries=0) as client:
        results = run_checks(client, INFO, write=False)
    by_name = {r.name: r for r in results}
    assert not has_failures(results)
    assert by_name["Customer: GetActors"].status == SKIP
    assert by_name["Customer: GetActors"].reason == "no Customer actors to ask for"
    assert by_name["Customer: SearchActors (blank)"].status == PASS


# --- broken connectors fail with readable reasons ---------------------------------------------------------------


def test_a_per_record_counter_is_not_a_valid_last_modified():
    def bump(fake):
        key = fake.service.all_actors("Customer")[0]["ErpKey"]
        fake.service.actors["Customer"][key]["_version"] = 7

    by_name, results, _ = check(CounterLastModified(), prepare=bump)
    assert by_name["Customer: LastModified format"].status == WARN
    assert "per-record version counter" in by_name["Customer: LastModified format"].reason
    create = by_name["Customer: CreateActor"]
    assert create.status == FAIL
    assert "LastModified 1, earlier than Customer" in create.reason
    assert "must be global and never decrease" in create.reason
    assert "per-record version counter" in create.reason
    inclusive = by_name["Customer: GetActorsByTimestamp inclusive"]
    assert inclusive.status == FAIL and "GetActorsByTimestamp failed" in inclusive.reason


def test_a_non_inclusive_change_feed_fails():
    by_name, results, _ = check(NotInclusive())
    result = by_name["Customer: GetActorsByTimestamp inclusive"]
    assert result.status == FAIL
    assert "left out Customer" in result.reason
    assert "the comparison must be inclusive (on or after)" in result.reason
    assert "does not list the new Customer" in by_name["Customer: CreateActor"].reason


def test_get_actors_must_leave_out_unknown_keys():
    by_name, results, _ = check(ReturnsUnknownKeys())
    result = by_name["Customer: GetActors"]
    assert result.status == FAIL
    assert "returned an actor for the unknown key 'C" in result.reason
    assert "GetActors must leave out keys it does not know" in result.reason
    assert by_name["Customer: SearchActors (blank)"].status == PASS


def test_a_blank_search_must_list_the_actors():
    by_name, results, _ = check(BlankSearchFindsNothing())
    result = by_name["Customer: SearchActors (blank)"]
    assert result.status == FAIL
    assert result.reason == ("a blank SearchText found nothing, but there are 3 Customer actors: a blank search "
                             "must list all actors of the type")


def test_answers_without_is_ok_fail_everything():
    by_name, results, _ = check(NoIsOk())
    assert by_name["GetConfigData"].status == FAIL
    assert "The connector's answer has no IsOk member." in by_name["GetConfigData"].reason
    assert by_name["SaveConnection"].status == FAIL
    assert {r.status for r in results} <= {FAIL, SKIP}
    # the rest is skipped with the reason, not a cascade of the same error
    assert by_name["GetSupportedActorTypes"].reason == "needs a saved connection (SaveConnection failed)"
    assert by_name["Response members"].reason == "no successful answer to look at"


def test_field_values_must_match_their_field_type():
    by_name, results, _ = check(WrongValueTypes())
    result = by_name["Customer: FieldValues types"]
    assert result.status == FAIL
    assert "employees (Integer) is a string (\"12\"), an Integer value must be a whole JSON number" in result.reason
    assert "active (Checkbox) is a string (\"[I:1]\"), a Checkbox value must be true or false" in result.reason
    assert by_name["Supplier: FieldValues types"].status == PASS  # suppliers have no such values


def test_ignoring_the_idempotency_key_is_a_warning_not_a_failure():
    by_name, results, fake = check(IgnoresIdempotencyKey())
    result = by_name["Customer: CreateActor idempotent"]
    assert result.status == WARN and result.passed
    assert "(ext) idempotent create not offered" in result.reason
    assert "created another Customer" in result.reason
    assert not has_failures(results), format_table(results)
    assert len(fake.service.created) == 2 * len(TYPES)


def test_an_unknown_guid_must_answer_unknown_connection_id():
    by_name, results, _ = check(AcceptsAnyGuid())
    result = by_name["Unknown ConnectionGuid"]
    assert result.status == FAIL
    assert "answered IsOk true" in result.reason and "UNKNOWN_CONNECTION_ID" in result.reason


def test_paging_that_ignores_the_cursor_fails():
    by_name, results, _ = check(CursorIgnored())
    result = by_name["Customer: GetActorsByTimestamp paging"]
    assert result.status == FAIL
    assert "came on page 1 and again on page 2: pages must cover each actor once" in result.reason


def test_a_page_without_next_cursor_loses_actors():
    by_name, results, _ = check(PageWithoutCursor())
    result = by_name["Customer: GetActorsByTimestamp paging"]
    assert result.status == FAIL
    assert result.reason == ("with Limit=1 it answered 1 of 3 actors and no NextCursor: the rest can never be "
                             "fetched")


def test_paging_is_optional():
    class NoPaging(FakeConnectorService):
        def GetActorsByTimestamp(self, body: dict) -> dict:
            return super().GetActorsByTimestamp({k: v for k, v in body.items() if k != "Limit"})

    by_name, results, _ = check(NoPaging(), write=False)
    result = by_name["Customer: GetActorsByTimestamp paging"]
    assert result.status == SKIP and "(ext) not offered" in result.reason
    assert not has_failures(results)


# --- paging under writes between pages (information, never a failure) ---------------------------------------


def values_of(fake: FakeConnector) -> dict[tuple[str, str], dict]:
    return {(t, a["ErpKey"]): a["FieldValues"] for t in TYPES for a in fake.service.all_actors(t)}


def test_keyset_paging_is_stable_under_writes_between_pages():
    seeded = {}
    by_name, results, fake = check(prepare=lambda fake: seeded.update(values_of(fake)), actor_types=["Customer"])
    result = by_name["Customer: GetActorsByTimestamp paging under writes"]
    assert result.status == PASS, format_table(results)
    assert result.reason.startswith("feed is stable under writes between pages (keyset-like): re-saved Customer "
                                    "C1001 between page 1 and 2 of Limit=2 from UpdatedOnOrAfter=(all); all 4 actors "
                                    "came in 3 pages")
    assert "name re-saved unchanged: LastModified " in result.reason
    assert "the re-saved actor came again on a later page" in result.reason
    names = [r.name for r in results]
    assert names.index("Customer: GetActorsByTimestamp paging under writes") == names.index("Customer: SaveActors") + 1
    # the re-save changed no value (the only change is the kit's own CK- record)
    assert {k: v for k, v in values_of(fake).items() if k in seeded} == seeded
    bodies = [b for b in fake.calls_to("SaveActors") if b["Actors"][0]["ErpKey"] == "C1001"]
    assert [b["Actors"][0]["FieldValues"] for b in bodies] == [{"name": "Acme AS"}]
    paged = [b for b in fake.calls_to("GetActorsByTimestamp") if b.get("Limit") == 2]
    assert len(paged) == 3 and {b["UpdatedOnOrAfter"] for b in paged} == {""}


def test_offset_paging_shifts_under_writes_and_is_reported_as_information():
    by_name, results, fake = check(OffsetPaging())
    assert not has_failures(results), format_table(results)
    assert by_name["Customer: GetActorsByTimestamp paging"].status == PASS  # without writes offset paging is fine
    result = by_name["Customer: GetActorsByTimestamp paging under writes"]
    assert result.status == PASS and result.passed
    assert result.reason.startswith(
        "feed shifts under writes between pages (offset-like paging): re-saved Customer C1001 between page 1 and 2 "
        "of Limit=2 from UpdatedOnOrAfter=(all); 1 of 4 actors skipped (C1003) — the portal copes (it reads the whole "
        "feed before writing), but other clients may not")
    for actor_type in ("Supplier", "Person", "Project"):
        reason = by_name[f"{actor_type}: GetActorsByTimestamp paging under writes"].reason
        assert reason.startswith("feed shifts under writes between pages (offset-like paging)"), reason
        assert "1 of 3 actors skipped" in reason
    assert fake.get_actor("Customer", "C1001")["FieldValues"]["name"] == "Acme AS"


def test_a_connector_that_skips_unchanged_saves_gets_a_change_that_is_undone():
    seeded = {}
    by_name, results, fake = check(SkipsUnchangedSaves(), prepare=lambda fake: seeded.update(values_of(fake)))
    assert not has_failures(results), format_table(results)
    result = by_name["Customer: GetActorsByTimestamp paging under writes"]
    assert result.status == PASS
    assert "1 of 4 actors skipped (C1003)" in result.reason
    assert "re-saving name unchanged left LastModified as it was, so name was changed (and restored after the read)" in result.reason
    bodies = [b["Actors"][0] for b in fake.calls_to("SaveActors") if b["Actors"][0]["ErpKey"] == "C1001"]
    assert [a["FieldValues"]["name"][:8] for a in bodies] == ["Acme AS", "CK-Name-", "Acme AS"]
    assert bodies[2]["LastModified"] > bodies[1]["LastModified"]  # the restore sends the LastModified just read
    assert {k: v for k, v in values_of(fake).items() if k in seeded} == seeded  # every value is back


def test_a_clock_at_rest_repeats_last_modified_and_that_is_legal():
    seeded = {}
    by_name, results, fake = check(FakeConnectorService(clock=SecondClock()),
                                   prepare=lambda fake: seeded.update(values_of(fake)))
    assert not has_failures(results), format_table(results)
    assert {a["LastModified"] for a in fake.service.all_actors("Customer")} == {"2026-01-01T08:00:00Z"}
    saved = by_name["Customer: SaveActors"]
    assert saved.status == PASS
    assert saved.reason.startswith("name changed; LastModified stayed 2026-01-01T08:00:00Z; the change feed lists it")
    # nothing moves in the feed when LastModified stays: the stability check cannot tell, and says so
    result = by_name["Customer: GetActorsByTimestamp paging under writes"]
    assert result.status == SKIP
    assert result.reason.startswith("cannot tell: changing name of Customer C1001 left its LastModified at "
                                    "2026-01-01T08:00:00Z (a repeated value: the connector's clock has not moved)")
    assert {k: v for k, v in values_of(fake).items() if k in seeded} == seeded


def test_paging_under_writes_skips_politely():
    class NoPaging(FakeConnectorService):
        def GetActorsByTimestamp(self, body: dict) -> dict:
            return super().GetActorsByTimestamp({k: v for k, v in body.items() if k != "Limit"})

    class ReadOnlyCustomers(FakeConnectorService):
        def GetSupportedActorTypeFields(self, body: dict) -> dict:
            answer = super().GetSupportedActorTypeFields(body)
            for meta in answer["FieldMetaDataObjects"]:
                meta["Access"] = "ReadOnly"
            return answer

    def one_customer(fake):
        for actor in fake.service.all_actors("Customer")[1:]:
            fake.delete_actor("Customer", actor["ErpKey"])

    by_name, results, fake = check(NoPaging(), actor_types=["Customer"])
    result = by_name["Customer: GetActorsByTimestamp paging under writes"]
    assert result.status == SKIP
    assert result.reason.startswith("the connector does not page GetActorsByTimestamp ((ext) not offered")
    by_name, results, fake = check(prepare=one_customer, actor_types=["Customer"])
    result = by_name["Customer: GetActorsByTimestamp paging under writes"]
    assert (result.status, result.reason) == (SKIP, "needs at least 3 Customer actors (there are 2)")
    by_name, results, fake = check(ReadOnlyCustomers(), actor_types=["Customer"])
    result = by_name["Customer: GetActorsByTimestamp paging under writes"]
    assert (result.status, result.reason) == (SKIP, "Customer has no writable field (read-only type): nothing to re-save")
    assert all(len(body["Actors"]) == 0 or body["Actors"][0]["ErpKey"] != "C1001"
               for body in fake.calls_to("SaveActors"))


def test_not_found_for_an_unknown_key_is_accepted():
    by_name, results, _ = check(NotFoundForUnknownKeys(), write=False)
    result = by_name["Customer: GetActors"]
    assert result.status == WARN and result.passed
    assert result.reason.startswith("[C1001] → C1001, with FieldKeys name, orgnr")
    assert "answered NOT_FOUND (accepted: the key is unknown) instead of leaving out the unknown key" in result.reason
    assert not has_failures(results)


def test_a_transient_error_is_named_as_such():
    by_name, results, _ = check(prepare=lambda fake: fake.fail_next(1, status=503, method="GetSupportedActorTypes"),
                                write=False)
    result = by_name["Unknown ConnectionGuid"]
    assert result.status == FAIL
    assert "[HTTP_503]" in result.reason
    assert "a transient error: the portal retries it with backoff; run the kit again" in result.reason
    assert "the portal would not know to re-send" not in result.reason


def test_every_answer_needs_the_response_members():
    by_name, results, _ = check(LeanEnvelope(), write=False)
    result = by_name["Response members"]
    assert result.status == FAIL
    assert "GetList: TechExplanation missing, State 'Fine' is not one of Ok, OkWithInfo, Warning, Error" \
        in result.reason
    assert "GetActors: " in result.reason
    assert by_name["Customer: GetActors"].status == PASS  # the functional check itself is fine


def test_field_metadata_shape_is_checked():
    by_name, results, _ = check(BadFieldMetadata(), write=False)
    result = by_name["Customer: GetSupportedActorTypeFields"]
    assert result.status == FAIL
    assert "field 'name': FieldType \"String\" is not one of Checkbox, Text" in result.reason
    assert "field 'orgnr': Access \"Hidden\" is not one of Normal, Mandatory, ReadOnly" in result.reason
    assert "field 'email': Rank is missing" in result.reason
    assert by_name["Customer: GetActors"].status == SKIP
    assert by_name["Supplier: GetSupportedActorTypeFields"].status == PASS


def test_actor_types_must_come_from_the_fixed_list():
    by_name, results, _ = check(ExtraActorType(), write=False)
    result = by_name["GetSupportedActorTypes"]
    assert result.status == FAIL
    assert result.reason.startswith('Items holds "Company", which are not actor types')


def test_last_modified_must_be_utc():
    by_name, results, _ = check(NaiveTimestamps(), write=False)
    result = by_name["Customer: LastModified format"]
    assert result.status == FAIL
    assert "is not marked as UTC (it must end in Z or +00:00)" in result.reason


def test_save_actors_must_not_leave_last_modified_behind():
    by_name, results, fake = check(SaveKeepsLastModified())
    # Saving the actor just created: an equal LastModified is legal (the connector's clock may not have moved) …
    saved = by_name["Customer: SaveActors"]
    assert saved.status == PASS and "name changed; LastModified stayed " in saved.reason
    assert "a repeated LastModified is legal while the connector's clock has not moved" in saved.reason
    # … but re-saving an older actor whose LastModified then stays behind newer stamps is not
    result = by_name["Customer: GetActorsByTimestamp paging under writes"]
    assert result.status == FAIL
    assert result.reason.startswith("SaveActors changed name of Customer C1001, but its LastModified is ")
    assert "the change feed would never list this write" in result.reason
    assert fake.get_actor("Customer", "C1001")["FieldValues"]["name"] == "Acme AS"  # the change was undone


def test_search_by_parent_must_keep_to_the_parent():
    def other_parent(fake):
        beta = next(a["ErpKey"] for a in fake.service.all_actors("Customer") if a["FieldValues"]["name"] == "Beta AB")
        fake.add_actor("Person", {"firstname": "Cy", "lastname": "Berg"}, parent=("Customer", beta))

    by_name, results, _ = check(ParentIgnored(), prepare=other_parent, write=False)
    result = by_name["Person: SearchActorByParent"]
    assert result.status == FAIL
    assert result.reason.startswith("returned actors of another parent: P")


def test_list_values_that_are_not_list_keys_are_a_warning():
    by_name, results, _ = check(prepare=lambda fake: fake.add_actor("Customer", {"name": "Zeta", "country": "XX"}),
                                write=False)
    result = by_name["Customer: GetList/GetListItems"]
    assert result.status == WARN
    assert "Customer values that are not keys of the list Countries: XX" in result.reason


def test_left_out_blank_values_are_a_warning():
    by_name, results, _ = check(LeavesOutBlankValues(), write=False)
    result = by_name["Customer: FieldValues types"]
    assert result.status == WARN
    assert "requested fields left out of FieldValues (read as blank)" in result.reason
    assert not has_failures(results)


def test_warning_answers_are_reported():
    by_name, results, _ = check(prepare=lambda fake: fake.reply_warning("TestConnection", "ERP offline"),
                                write=False)
    result = by_name["TestConnection"]
    assert result.status == WARN
    assert "TestConnection answered State Warning: ERP offline" in result.reason


def test_a_refused_connection_skips_the_rest():
    by_name, results, _ = check(config={"Company": "ACME", "ApiKey": "wrong"})
    assert by_name["TestConfigData"].status == FAIL
    assert by_name["TestConfigData"].reason == \
        "TestConfigData failed: The ERP refused the API key. [BAD_CREDENTIALS] (TestConfigData: 401 from the fake ERP)"
    assert by_name["TestConnection"].status == FAIL
    assert by_name["Unknown ConnectionGuid"].status == PASS
    assert by_name["GetSupportedActorTypes"].status == SKIP
    assert by_name["GetSupportedActorTypes"].reason == "needs a working connection (TestConnection failed)"
    assert by_name["DeleteConnection"].status == PASS


def test_a_connector_error_names_the_method_and_code():
    by_name, results, _ = check(prepare=lambda fake: fake.reply_error("SaveActors", "Record locked",
                                                                      error_code="LOCKED"))
    result = by_name["Customer: SaveActors"]
    assert result.status == FAIL
    assert result.reason.startswith("SaveActors failed: Record locked [LOCKED]")


def test_an_unreachable_connector_fails_readably():
    with FakeConnector() as fake:
        url = fake.url
    with ConnectorClient(url, retries=0, timeout=2) as client:
        results = run_checks(client, INFO)
    assert results[0].status == FAIL
    assert "The connector could not be reached" in results[0].reason
    assert [r.name for r in results if r.status != SKIP] == ["GetConfigData", "TestConfigData", "SaveConnection"]


# --- building blocks ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("value, kind", [
    ("2026-11-25T17:02:06.123456Z", "iso"),
    ("2026-11-25T17:02:06Z", "iso"),
    ("2026-11-25T17:02:06.123+00:00", "iso"),
    ("1764089526123456", "int"),
    ("7", "int"),
])
def test_parse_last_modified_accepts_global_formats(value, kind):
    assert parse_last_modified(value)[0] == kind


@pytest.mark.parametrize("value, message", [
    ("2026-11-25T17:02:06", "not marked as UTC"),
    ("2026-11-25T17:02:06+02:00", "not marked as UTC"),
    ("2026-11-25", "neither an ISO-8601 UTC timestamp nor a decimal integer"),
    ("v3", "neither"),
    (42, r"is a number \(42\), not a string"),
    ("", "blank"),
    (None, "is null"),
])
def test_parse_last_modified_rejects_the_rest(value, message):
    with pytest.raises(ValueError, match=message):
        parse_last_modified(value)


def test_last_modified_sort_keys_keep_sub_microsecond_order():
    early = parse_last_modified("2026-11-25T17:02:06.123456789Z")[1]
    late = parse_last_modified("2026-11-25T17:02:06.12345679Z")[1]
    assert early < late < parse_last_modified("2026-11-25T17:02:07Z")[1]


@pytest.mark.parametrize("ftype, value, ok", [
    ("Text", "x", True), ("Text", 1, False), ("List", "NO", True), ("List", 3, False),
    ("Integer", 3, True), ("Integer", 3.0, False), ("Integer", True, False), ("Integer", "3", False),
    ("Double", 1.5, True), ("Double", 2, True), ("Double", "1.5", False), ("Double", False, False),
    ("Checkbox", False, True), ("Checkbox", 1, False),
    ("Date", "2026-11-25", True), ("Date", "2026-11-25T10:00:00Z", True), ("Date", "25.11.2026", False),
    ("Date", "", False), ("Text", None, True), ("Date", None, True),
])
def test_value_problem(ftype, value, ok):
    assert (value_problem({"FieldType": ftype}, value) is None) is ok


def test_metadata_problems_lists_each_issue():
    problems = metadata_problems([
        {"FieldKey": "a", "DisplayName": "A", "DisplayDescription": "", "FieldType": "List", "ListName": "",
         "DefaultValue": "", "MaxLength": -1, "Access": "Normal", "Rank": "1"},
        {"FieldKey": "a"},
        "oops",
    ], "FieldMetaDataObjects")
    text = "\n".join(problems)
    assert "field 'a': MaxLength is negative" in text
    assert "field 'a': Rank is a string, not a whole number" in text
    assert "field 'a': a List field needs a ListName" in text
    assert "field 'a': FieldKey appears twice" in text
    assert "entry #3 is a string, not an object" in text
    assert metadata_problems({}, "X") == ["X is an object, not an array"]


def test_convert_config_value_follows_the_field_type():
    assert convert_config_value({"FieldType": "Integer"}, "30") == 30
    assert convert_config_value({"FieldType": "Double"}, "1,5") == 1.5
    assert convert_config_value({"FieldType": "Checkbox"}, "true") is True
    assert convert_config_value({"FieldType": "Checkbox"}, "no") is False
    assert convert_config_value({"FieldType": "Password"}, " secret ") == " secret "
    assert convert_config_value({"FieldType": "Text"}, " ACME ") == "ACME"
    assert convert_config_value({"FieldType": "Integer"}, "many") == "many"  # the connector judges it
    assert convert_config_value(None, "x") == "x"
    assert convert_config_value({"FieldType": "Integer"}, 5) == 5


def test_check_result_status_and_table():
    ok, bad = CheckResult("A", True, "fine", 0.25), CheckResult("B check", False, "broken", 1.5)
    warn = CheckResult("C", True, "hm", 0, WARN)
    assert (ok.status, bad.status, warn.status, warn.passed) == (PASS, FAIL, WARN, True)
    assert CheckResult("D", True, status=FAIL).passed is False
    with pytest.raises(ValueError):
        CheckResult("E", True, status="MAYBE")
    table = format_table([ok, bad, warn])
    assert "B check | FAIL   |    1.50 | broken" in table
    assert table.splitlines()[-1] == "1 passed, 1 failed, 1 warnings, 0 skipped in 1.75 s"
    assert has_failures([ok, bad]) and not has_failures([ok, warn])


# --- the command line ---------------------------------------------------------------------------------------------


def test_cli_prints_the_table_and_exits_zero(app):
    with FakeConnector() as fake:
        seed(fake)
        url = fake.url
        result = app.test_cli_runner().invoke(args=[
            "connector", "check", url, "--config", "Company=ACME", "--config", "ApiKey=k3y",
            "--config", "PageSize=50", "--actor-type", "Customer"])
        saved = fake.calls_to("SaveConnection")
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0] == f"Conformance check of {url}"
    assert [part.strip() for part in lines[1].split("|")] == ["check", "status", "seconds", "reason"]
    assert any(line.startswith("Customer: CreateActor idempotent") and "| PASS " in line for line in lines)
    assert "0 failed" in lines[-1]
    assert saved[0]["ConnectionInfo"] == {"Company": "ACME", "ApiKey": "k3y", "PageSize": 50}


def test_cli_exits_one_when_a_check_fails(app):
    with FakeConnector(service=NotInclusive()) as fake:
        seed(fake)
        result = app.test_cli_runner().invoke(args=[
            "connector", "check", fake.url, "--config", "Company=ACME", "--config", "ApiKey=k3y", "--no-write"])
        created = fake.service.created
    assert result.exit_code == 1, result.output
    assert "(read-only)" in result.output.splitlines()[0]
    assert any(line.startswith("Customer: GetActorsByTimestamp inclusive") and "| FAIL " in line
               for line in result.output.splitlines())
    assert created == []


def test_cli_sends_the_token_and_rejects_bad_config(app):
    with FakeConnector(token="t0ken") as fake:
        seed(fake)
        runner = app.test_cli_runner()
        bad = runner.invoke(args=["connector", "check", fake.url, "--config", "Company"])
        refused = runner.invoke(args=["connector", "check", fake.url, "--no-write"])
        allowed = runner.invoke(args=["connector", "check", fake.url, "--token", "t0ken", "--no-write",
                                      "--config", "Company=ACME", "--config", "ApiKey=k3y"])
    assert bad.exit_code == 2 and "'Company' is not KEY=VALUE" in bad.output
    assert refused.exit_code == 1 and "HTTP 401" in refused.output
    assert allowed.exit_code == 0, allowed.output
