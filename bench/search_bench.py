"""CRM search at scale: the indexed search against the old LIKE scan (issue #19: p95 <= 10 ms at 100,000 companies).

    .venv/bin/python -m bench.search_bench                       # 100,000 companies, SQLite in a temporary dir
    .venv/bin/python -m bench.search_bench --companies 20000 --repeat 50
    .venv/bin/python -m bench.search_bench --database-url postgresql://portal@127.0.0.1:5432/portal_bench

Builds N companies (one contact each, N/5 projects) with bulk inserts — the index is filled by its triggers on
SQLite, by its GIN indexes on PostgreSQL — then times, per record type and query, one search page as the list
screen asks for it (the count and the first 50 records with their list options: ``crm.paginate``) for
``crm.search_statement`` (the index) and ``crm.search_statement_scan`` (the old scan), and prints p50/p95 in ms.
Both must find the same records: the bench checks the counts agree.
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from pathlib import Path

QUERIES = {
    "common word": "bygg",
    "rare word": "zephyrholm",
    "2 letters": "as",
    "1 letter": "ø",
    "multi-term": "bygg østfold",
    "multi + short": "bygg as",
    "upper case": "ØSTFOLD",
    "no match": "qqxjw",
}
SYLLABLES = ["ber", "dal", "fjell", "gård", "holm", "lund", "mo", "nes", "rud", "sand", "stad", "strand", "vik",
             "øy", "å", "bakk", "li", "haug", "tveit", "heim", "ås", "kvam", "rø", "sæt"]
CITIES = ["Oslo", "Bergen", "Trondheim", "Stavanger", "Tromsø", "Ålesund", "Bodø", "Østfold", "Drammen", "Skien",
          "Førde", "Molde", "Hamar", "Lillehammer", "Gjøvik", "Kristiansand", "Arendal", "Harstad", "Narvik", "Steinkjer"]
KINDS = ["Bygg", "Rør", "Elektro", "Transport", "Regnskap", "Consulting", "Maskin", "Handel", "Eiendom", "Data"]
FIRST = ["Kari", "Ola", "Ingrid", "Per", "Åse", "Øystein", "Siri", "Lars", "Berit", "Jørgen", "Marit", "Håkon"]
LAST = ["Hansen", "Johansen", "Olsen", "Larsen", "Andersen", "Pedersen", "Nilsen", "Kristiansen", "Jensen", "Berg",
        "Haugen", "Dahl", "Lie", "Bakken", "Strand", "Søreide"]


def _word(rng: random.Random) -> str:
    return "".join(rng.choice(SYLLABLES) for _ in range(rng.randint(2, 3))).capitalize()


def build(companies: int, seed: int = 19) -> None:
    from sqlalchemy import insert

    from portal.extensions import db
    from portal.models import Company, Contact, Project

    rng = random.Random(seed)
    batch = 5000
    for start in range(0, companies, batch):
        rows = []
        for n in range(start, min(companies, start + batch)):
            name = f"{_word(rng)} {rng.choice(KINDS)} {rng.choice(['AS', 'ASA', 'ANS', 'DA', 'SA'])}"
            if n == companies // 2:
                name = "Zephyrholm Consulting AS"
            rows.append({"name": name, "number": str(10000 + n), "code": f"C{n}",
                         "postal_city": rng.choice(CITIES), "street_city": rng.choice(CITIES),
                         "email": f"post@{_word(rng).lower()}{n}.no"})
        db.session.execute(insert(Company), rows)
        db.session.commit()
    for start in range(0, companies, batch):
        rows = [{"first_name": rng.choice(FIRST), "last_name": rng.choice(LAST), "email": f"p{n}@example.no",
                 "company_id": n + 1} for n in range(start, min(companies, start + batch))]
        db.session.execute(insert(Contact), rows)
        db.session.commit()
    rows = [{"name": f"{_word(rng)} {rng.choice(KINDS)} prosjekt", "number": f"P{n}"}
            for n in range(companies // 5)]
    for start in range(0, len(rows), batch):
        db.session.execute(insert(Project), rows[start:start + batch])
        db.session.commit()
    if db.engine.dialect.name == "postgresql":
        with db.engine.begin() as connection:
            connection.exec_driver_sql("ANALYZE company; ANALYZE contact; ANALYZE project")
    elif db.engine.dialect.name == "sqlite":
        with db.engine.begin() as connection:
            connection.exec_driver_sql("ANALYZE")
            for table in ("company_search", "contact_search", "project_search"):
                connection.exec_driver_sql(f"INSERT INTO {table}({table}) VALUES ('optimize')")


def measure(crm_type: str, query: str, statement, repeat: int) -> tuple[list[float], int]:
    from portal.extensions import db
    from portal.services import crm

    times, total = [], 0
    for _ in range(repeat + 1):
        start = time.perf_counter()
        page = crm.paginate(statement(crm_type, query), 1, crm.PAGE_SIZE, crm.LIST_OPTIONS[crm.CrmType(crm_type)])
        times.append(time.perf_counter() - start)
        total = page.total
        db.session.expunge_all()
    return times[1:], total  # the first run warms the caches


def _ms(values: list[float], share: float) -> str:
    ordered = sorted(values)
    return f"{ordered[min(len(ordered) - 1, int(share * len(ordered)))] * 1000:.1f}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--companies", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=30, help="timed runs per query (after one warm-up)")
    parser.add_argument("--scan-repeat", type=int, default=10, help="timed runs per query of the old scan")
    parser.add_argument("--database-url", help="an empty PostgreSQL database (default: SQLite in a temporary dir)")
    parser.add_argument("--types", default="company,contact,project")
    args = parser.parse_args(argv)

    from portal import create_app
    from portal.extensions import db
    from portal.services import crm

    with tempfile.TemporaryDirectory(prefix="search-bench-") as work:
        url = args.database_url or f"sqlite:///{Path(work) / 'portal.db'}"
        from cryptography.fernet import Fernet

        app = create_app({"TESTING": False, "SCHEDULER": False, "DEMO_DATA": False, "SQLALCHEMY_DATABASE_URI": url,
                          "INSTANCE_PATH": str(Path(work) / "instance"), "DEMO_ERP_DB": str(Path(work) / "x.db"),
                          "SECRET_KEY": "benchmark-secret-key-0123456789", "LOG_LEVEL": "WARNING",
                          "ENCRYPTION_KEYS": [Fernet.generate_key().decode()]}, environ={})
        with app.app_context():
            if url.startswith("postgresql"):
                db.drop_all()
            db.create_all()
            started = time.perf_counter()
            build(args.companies)
            print(f"{args.companies:,} companies, {args.companies:,} contacts, {args.companies // 5:,} projects on "
                  f"{db.engine.dialect.name}; built in {time.perf_counter() - started:.0f} s. "
                  f"One search page (count + first {crm.PAGE_SIZE}), ms:\n")
            print("| type | query | matches | index p50 | index p95 | scan p50 | scan p95 |")
            print("|---|---|---:|---:|---:|---:|---:|")
            worst = 0.0
            for crm_type in args.types.split(","):
                for label, query in QUERIES.items():
                    new, total = measure(crm_type, query, crm.search_statement, args.repeat)
                    old, old_total = measure(crm_type, query, crm.search_statement_scan, args.scan_repeat)
                    if total != old_total:
                        print(f"DIFFERENT RESULTS: {crm_type} {query!r}: index {total}, scan {old_total}")
                        return 1
                    worst = max(worst, sorted(new)[int(0.95 * len(new))])
                    print(f"| {crm_type} | {label} `{query}` | {total:,} | {_ms(new, 0.5)} | {_ms(new, 0.95)} | "
                          f"{_ms(old, 0.5)} | {_ms(old, 0.95)} |", flush=True)
            print(f"\nworst index p95: {worst * 1000:.1f} ms (target: 10 ms)")
            db.session.remove()
            if url.startswith("postgresql"):
                db.drop_all()
            db.engine.dispose()
    return 0


if __name__ == "__main__":
    sys.exit(main())
