"""Demo CRM records for a first look (only on an empty CRM)."""

from __future__ import annotations

import random

from sqlalchemy import func, select

from portal.extensions import db
from portal.models import Company, Contact, CrmList, ListItem, Project

_COMPANIES = [
    ("Nordlys Shipping AS", "Bergen", "Norway"), ("Fjordkraft Engineering", "Stavanger", "Norway"),
    ("Skagen Design ApS", "Aarhus", "Denmark"), ("Helios Solar GmbH", "Freiburg", "Germany"),
    ("Lumen Lighting BV", "Eindhoven", "Netherlands"), ("Baltic Timber AB", "Kalmar", "Sweden"),
    ("Aurora Analytics Oy", "Tampere", "Finland"), ("Thames Valley Foods Ltd", "Reading", "United Kingdom"),
    ("Alpine Precision AG", "Basel", "Switzerland"), ("Iberia Textiles SL", "Valencia", "Spain"),
    ("Lago Verde Srl", "Como", "Italy"), ("Celtic Software Ltd", "Cork", "Ireland"),
    ("Vistula Logistics Sp. z o.o.", "Gdansk", "Poland"), ("Maple Leaf Robotics Inc.", "Waterloo", "Canada"),
    ("Harbor Medical Supply LLC", "Portland", "United States"),
]
_PEOPLE = ["Ingrid Hansen", "Lars Olsen", "Mette Nielsen", "Jonas Weber", "Sanne de Vries", "Erik Lund",
           "Aino Virtanen", "Oliver Smith", "Lea Müller", "Lucía García", "Marco Rossi", "Siobhán Murphy",
           "Piotr Nowak", "Chloé Martin", "James Carter", "Nora Berg", "Henrik Dahl", "Emma Wilson"]
_PROJECTS = ["ERP roll-out", "Warehouse automation", "Website relaunch", "Solar park phase 2",
             "Fleet renewal", "Data platform", "Retail pilot", "Cloud migration"]


def seed_demo_crm() -> None:
    if db.session.scalar(select(func.count()).select_from(Company)):
        return
    rng = random.Random(7)
    items = {(i.list_name, i.name): i.id for i in db.session.scalars(select(ListItem))}
    businesses = [i for (lst, _n), i in items.items() if lst == CrmList.BUSINESS]
    statuses = [i for (lst, _n), i in items.items() if lst == CrmList.PROJECT_STATUS]
    for index, (name, city, country) in enumerate(_COMPANIES):
        domain = name.split()[0].lower().replace("æ", "ae").replace("ø", "o")
        company = Company(
            name=name, number=f"{10100 + index}", code=f"C{index + 1:03d}", postal_city=city,
            postal_address1=f"{rng.randint(1, 120)} Harbour Street", postal_zip=f"{rng.randint(1000, 9999)}",
            phone=f"+{rng.randint(30, 49)} {rng.randint(100, 999)} {rng.randint(10000, 99999)}",
            email=f"post@{domain}.example", url=f"https://www.{domain}.example",
            country_id=items.get((CrmList.COUNTRY, country)),
            business_id=rng.choice(businesses) if businesses else None,
        )
        db.session.add(company)
        for person in rng.sample(_PEOPLE, 2):
            first, last = person.split(" ", 1)
            company.contacts.append(Contact(
                first_name=first, last_name=last, email=f"{first.lower()}.{last.lower()}@{domain}.example",
                phone_mobile=f"+47 {rng.randint(400, 999)} {rng.randint(10000, 99999)}",
                position=rng.choice(["CEO", "CFO", "Purchasing manager", "Project lead", "Accountant"]),
            ))
    for index, name in enumerate(_PROJECTS):
        db.session.add(Project(name=name, number=f"P-{2026}{index + 1:03d}",
                               description=f"{name} for a key customer.",
                               status_id=rng.choice(statuses) if statuses else None))
    db.session.commit()
