"""The demo records (customers, suppliers, persons, projects) and ``populate_demo_data``, which creates them in a
running Tryton through JSON-RPC (``portal.connectors.builtin.tryton_rpc``), idempotently."""

from __future__ import annotations

from decimal import Decimal

from portal.tryton_admin.home import Log, _quiet

DEMO_CUSTOMERS = (
    {"name": "Acme Industries GmbH", "email": "info@acme.example", "phone": "+49 30 1234567",
     "website": "https://acme.example", "street": "Hauptstraße 1\nHinterhaus", "postal_code": "10115",
     "city": "Berlin", "country": "DE", "subdivision": "DE-BE", "lang": "de"},
    {"name": "Globex Nordic AS", "email": "post@globex.example", "phone": "+47 22 00 00 00",
     "street": "Karl Johans gate 1", "postal_code": "0154", "city": "Oslo", "country": "NO", "lang": "en"},
    {"name": "Müller & Söhne KG", "email": "kontakt@mueller.example", "street": "Königsallee 5",
     "postal_code": "40212", "city": "Düsseldorf", "country": "DE"},
    {"name": "Initech Ltd", "phone": "+44 20 7946 0000", "mobile": "+44 7700 900000"},  # no address
)
DEMO_SUPPLIERS = (
    {"name": "Northwind Traders Inc", "email": "sales@northwind.example", "street": "1 Market St",
     "postal_code": "94105", "city": "San Francisco", "country": "US", "subdivision": "US-CA"},
    {"name": "Contoso Supplies BV", "email": "orders@contoso.example", "street": "Damrak 1",
     "postal_code": "1012 LG", "city": "Amsterdam", "country": "NL"},
)
DEMO_PERSONS = (
    {"name": "Anna Schmidt", "employer": "Acme Industries GmbH", "email": "anna.schmidt@acme.example",
     "phone": "+49 30 1234568"},
    {"name": "Ola Nordmann", "employer": "Globex Nordic AS", "email": "ola@globex.example",
     "mobile": "+47 900 00 000"},
    {"name": "Peter Gibbons", "employer": "Initech Ltd", "email": "peter@initech.example"},
    {"name": "Jane Doe", "employer": "Northwind Traders Inc", "email": "jane@northwind.example"},
)
DEMO_PROJECTS = (
    {"name": "Website relaunch", "party": "Acme Industries GmbH", "comment": "New public website.",
     "status": "Open"},
    {"name": "ERP rollout", "party": "Globex Nordic AS", "comment": "Go-live of the ERP.", "status": "Done"},
)


def populate_demo_data(url: str, database: str, user: str, password: str, *, log: Log = _quiet) -> dict:
    """Create (or find) the demo records through JSON-RPC: a currency and company (needed by projects),
    party categories Customer/Supplier, relation types Employee of/Employer of, customers, suppliers,
    persons and projects. Idempotent: every record is looked up by name first."""
    from portal.connectors.builtin.tryton_rpc import TrytonClient

    client = TrytonClient(url, database, user, password, timeout=60)
    created = 0

    def find_or_create(model: str, domain: list, values: dict) -> int:
        nonlocal created
        found = client.search(model, domain, limit=1, context={"active_test": False})
        if found:
            return found[0]
        created += 1
        return client.model(model, "create", [values])[0]

    ids: dict = {}
    ids["currency"] = find_or_create("currency.currency", [["code", "=", "EUR"]],
                                     {"name": "Euro", "code": "EUR", "symbol": "€", "digits": 2,
                                      "rounding": Decimal("0.01")})
    company_party = find_or_create("party.party", [["name", "=", "Portal Demo Company AS"]],
                                   {"name": "Portal Demo Company AS"})
    ids["company"] = find_or_create("company.company", [["party", "=", company_party]],
                                    {"party": company_party, "currency": ids["currency"]})
    client.model("res.user", "write", [client.user_id or client.login()],
                 {"companies": [["add", [ids["company"]]]], "company": ids["company"]})
    client.login()  # refresh the context: it now carries the company
    ids["categories"] = {name: find_or_create("party.category", [["name", "=", name], ["parent", "=", None]],
                                              {"name": name}) for name in ("Customer", "Supplier")}
    employee_of = find_or_create("party.relation.type", [["name", "=", "Employee of"]], {"name": "Employee of"})
    employer_of = find_or_create("party.relation.type", [["name", "=", "Employer of"]],
                                 {"name": "Employer of", "reverse": employee_of})
    client.model("party.relation.type", "write", [employee_of], {"reverse": employer_of})
    ids["relation_types"] = {"Employee of": employee_of, "Employer of": employer_of}

    countries = {row["code"]: row["id"] for row in client.search_read("country.country", [], ["code"])}
    langs = {row["code"]: row["id"] for row in client.search_read("ir.lang", [], ["code"])}

    def party_values(spec: dict, category: str | None) -> dict:
        values: dict = {"name": spec["name"]}
        if category:
            values["categories"] = [["add", [ids["categories"][category]]]]
        mechanisms = [{"type": kind, "value": spec[key]} for key, kind in
                      (("email", "email"), ("phone", "phone"), ("mobile", "mobile"), ("website", "website"))
                      if spec.get(key)]
        if mechanisms:
            values["contact_mechanisms"] = [["create", mechanisms]]
        if spec.get("city"):
            address = {"street": spec.get("street"), "postal_code": spec.get("postal_code"), "city": spec["city"],
                       "country": countries.get(spec.get("country"))}
            if spec.get("subdivision"):
                found = client.search("country.subdivision", [["code", "=", spec["subdivision"]]], limit=1)
                address["subdivision"] = found[0] if found else None
            values["addresses"] = [["create", [address]]]
        if spec.get("lang") in langs:
            values["lang"] = langs[spec["lang"]]
        return values

    parties: dict[str, int] = {}
    for category, specs in (("Customer", DEMO_CUSTOMERS), ("Supplier", DEMO_SUPPLIERS)):
        for spec in specs:
            parties[spec["name"]] = find_or_create("party.party", [["name", "=", spec["name"]]],
                                                   party_values(spec, category))
    for spec in DEMO_PERSONS:
        values = party_values(spec, None)
        values["relations"] = [["create", [{"to": parties[spec["employer"]], "type": employee_of}]]]
        parties[spec["name"]] = find_or_create("party.party", [["name", "=", spec["name"]]], values)
    statuses = {row["name"]: row for row in client.search_read("project.work.status", [], ["name", "progress"])}
    projects = {}
    for spec in DEMO_PROJECTS:
        projects[spec["name"]] = find_or_create(
            "project.work", [["name", "=", spec["name"]], ["type", "=", "project"]],
            {"name": spec["name"], "type": "project", "company": ids["company"], "party": parties[spec["party"]],
             "comment": spec["comment"], "status": statuses[spec["status"]]["id"],
             # a "Done" status requires the work's progress to reach the status's progress (100 %)
             "progress": statuses[spec["status"]]["progress"]})
    ids["parties"], ids["projects"] = parties, projects
    log(f"demo data: {created} record(s) created, {len(parties)} parties and {len(projects)} projects present")
    client.logout()
    return ids
