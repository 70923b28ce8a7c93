"""Reference lists and realistic seed data of the built-in Demo ERP.

Everything here is plain data and deterministic: ``generate_seed()`` uses ``random.Random(42)`` and a fixed
reference date, so every fresh Demo ERP holds the same companies, people and projects (handy for docs, demos
and tests). The connector (the ``demo`` package) stores the result; this module knows nothing about storage.
"""

from __future__ import annotations

import random
import unicodedata
from dataclasses import dataclass
from datetime import date, timedelta

SEED = 42
# Dates in the seed are relative to this fixed day, never to "today", so the data never changes.
REFERENCE_DATE = date(2026, 11, 1)

# ---------------------------------------------------------------------------------------------------------------
# Lists (GetList / GetListItems): name -> [(item key, display text)], in display order.

LISTS: dict[str, list[tuple[str, str]]] = {
    "countries": [
        ("NO", "Norway"), ("SE", "Sweden"), ("DK", "Denmark"), ("FI", "Finland"), ("IS", "Iceland"),
        ("DE", "Germany"), ("AT", "Austria"), ("CH", "Switzerland"), ("NL", "Netherlands"), ("BE", "Belgium"),
        ("LU", "Luxembourg"), ("FR", "France"), ("GB", "United Kingdom"), ("IE", "Ireland"), ("ES", "Spain"),
        ("PT", "Portugal"), ("IT", "Italy"), ("PL", "Poland"), ("CZ", "Czechia"), ("EE", "Estonia"),
        ("US", "United States"), ("CA", "Canada"), ("MX", "Mexico"), ("BR", "Brazil"), ("AU", "Australia"),
        ("NZ", "New Zealand"), ("JP", "Japan"), ("SG", "Singapore"), ("IN", "India"), ("ZA", "South Africa"),
    ],
    "currencies": [
        ("EUR", "Euro"), ("USD", "US dollar"), ("GBP", "Pound sterling"), ("NOK", "Norwegian krone"),
        ("SEK", "Swedish krona"), ("DKK", "Danish krone"), ("CHF", "Swiss franc"), ("PLN", "Polish złoty"),
        ("CAD", "Canadian dollar"), ("AUD", "Australian dollar"), ("JPY", "Japanese yen"),
    ],
    "paymentterms": [
        ("PREPAID", "Prepayment"), ("COD", "Cash on delivery"), ("NET10", "10 days net"),
        ("NET14", "14 days net"), ("NET30", "30 days net"), ("NET45", "45 days net"), ("NET60", "60 days net"),
        ("EOM30", "End of month + 30 days"),
    ],
    "customergroups": [
        ("RETAIL", "Retail"), ("WHOLESALE", "Wholesale"), ("PUBLIC", "Public sector"),
        ("PARTNER", "Reseller partner"), ("KEYACCOUNT", "Key account"), ("EXPORT", "Export"),
    ],
    "projectstatus": [
        ("PLANNED", "Planned"), ("ACTIVE", "Active"), ("ONHOLD", "On hold"), ("DONE", "Completed"),
    ],
}

# ---------------------------------------------------------------------------------------------------------------
# Locales the seed draws companies and people from. '#' in a pattern is a random digit.


@dataclass(frozen=True)
class Locale:
    country: str
    currency: str
    suffix: str  # legal form
    tld: str
    cities: tuple[tuple[str, str], ...]  # (zip, city)
    streets: tuple[str, ...]
    number_first: bool  # "12 High Street" rather than "Storgata 12"
    po_box: str  # "Postboks {n}"
    first_names: tuple[str, ...]
    last_names: tuple[str, ...]
    trades: tuple[str, ...]  # local words for a line of business
    phone: str
    mobile: str
    vat: str


LOCALES: tuple[Locale, ...] = (
    Locale("NO", "NOK", "AS", "no",
           (("0150", "Oslo"), ("5003", "Bergen"), ("7010", "Trondheim"), ("4006", "Stavanger"), ("9008", "Tromsø")),
           ("Storgata", "Kongens gate", "Strandveien", "Dronningens gate", "Sjøgata"), False, "Postboks {n}",
           ("Ingrid", "Lars", "Kari", "Ola", "Sigrid", "Henrik", "Marte", "Eirik", "Solveig", "Magnus"),
           ("Hansen", "Johansen", "Olsen", "Larsen", "Andersen", "Berg", "Haugen", "Dahl", "Lie", "Bakken"),
           ("Maskin", "Logistikk", "Bygg", "Sjømat", "Elektro"),
           "+47 2# ## ## ##", "+47 9## ## ###", "NO#########MVA"),
    Locale("SE", "SEK", "AB", "se",
           (("111 52", "Stockholm"), ("411 04", "Göteborg"), ("211 22", "Malmö"), ("753 20", "Uppsala")),
           ("Drottninggatan", "Kungsgatan", "Sveavägen", "Storgatan", "Vasagatan"), False, "Box {n}",
           ("Anna", "Erik", "Maria", "Johan", "Elin", "Karl", "Sofia", "Anders", "Linnea", "Oskar"),
           ("Andersson", "Johansson", "Karlsson", "Nilsson", "Eriksson", "Lindqvist", "Berglund", "Holm",
            "Sandberg", "Ek"),
           ("Verkstad", "Bygg", "Trä", "Data", "Transport"),
           "+46 8 ### ### ##", "+46 70 ### ## ##", "SE##########01"),
    Locale("DK", "DKK", "A/S", "dk",
           (("1050", "København K"), ("8000", "Aarhus C"), ("5000", "Odense C"), ("9000", "Aalborg")),
           ("Vesterbrogade", "Nørregade", "Østergade", "Havnegade"), False, "Postboks {n}",
           ("Mette", "Søren", "Camilla", "Mads", "Freja", "Rasmus", "Ida", "Jesper"),
           ("Jensen", "Nielsen", "Pedersen", "Kristensen", "Sørensen", "Møller", "Rasmussen"),
           ("Maskinfabrik", "Teknik", "Emballage", "Møbler"),
           "+45 3# ## ## ##", "+45 2# ## ## ##", "DK########"),
    Locale("FI", "EUR", "Oy", "fi",
           (("00100", "Helsinki"), ("33100", "Tampere"), ("20100", "Turku"), ("90100", "Oulu")),
           ("Mannerheimintie", "Hämeenkatu", "Aleksanterinkatu", "Satamakatu"), False, "PL {n}",
           ("Aino", "Juha", "Laura", "Mikko", "Sanna", "Timo", "Emilia", "Antti"),
           ("Korhonen", "Virtanen", "Mäkinen", "Nieminen", "Laine", "Heikkinen", "Koskinen"),
           ("Metalli", "Kone", "Puu", "Teknologia"),
           "+358 9 ### ####", "+358 40 ### ####", "FI########"),
    Locale("DE", "EUR", "GmbH", "de",
           (("10115", "Berlin"), ("80331", "München"), ("20095", "Hamburg"), ("50667", "Köln"),
            ("60311", "Frankfurt am Main")),
           ("Hauptstraße", "Bahnhofstraße", "Schillerstraße", "Lindenallee", "Industriestraße"), False,
           "Postfach {n}",
           ("Julia", "Thomas", "Katrin", "Stefan", "Anja", "Michael", "Lena", "Jürgen", "Sabine", "Felix"),
           ("Müller", "Schmidt", "Schneider", "Fischer", "Weber", "Becker", "Hoffmann", "Schäfer", "Wagner"),
           ("Maschinenbau", "Logistik", "Elektrotechnik", "Feinmechanik", "Lebensmittel"),
           "+49 ## #######", "+49 15# ########", "DE#########"),
    Locale("NL", "EUR", "B.V.", "nl",
           (("1012 AB", "Amsterdam"), ("3011 AD", "Rotterdam"), ("3511 LX", "Utrecht"), ("2511 CV", "Den Haag")),
           ("Keizersgracht", "Herengracht", "Stationsplein", "Coolsingel", "Oudegracht"), False, "Postbus {n}",
           ("Sanne", "Daan", "Femke", "Pieter", "Lotte", "Bram", "Eva", "Joost"),
           ("de Jong", "Jansen", "de Vries", "van den Berg", "Bakker", "Visser", "Smit", "Meijer"),
           ("Techniek", "Logistiek", "Bouw", "Installaties"),
           "+31 20 ### ####", "+31 6 ########", "NL#########B01"),
    Locale("FR", "EUR", "SAS", "fr",
           (("75002", "Paris"), ("69002", "Lyon"), ("13001", "Marseille"), ("31000", "Toulouse"), ("44000", "Nantes")),
           ("rue de Rivoli", "avenue Jean Jaurès", "boulevard Haussmann", "rue de la République"), True,
           "BP {n}",
           ("Camille", "Nicolas", "Claire", "Julien", "Chloé", "Antoine", "Léa", "Mathieu", "Élodie"),
           ("Martin", "Bernard", "Dubois", "Durand", "Lefèvre", "Moreau", "Laurent", "Girard"),
           ("Industrie", "Transports", "Conseil", "Emballages"),
           "+33 1 ## ## ## ##", "+33 6 ## ## ## ##", "FR###########"),
    Locale("GB", "GBP", "Ltd", "co.uk",
           (("EC1A 1BB", "London"), ("M1 1AE", "Manchester"), ("B1 1AA", "Birmingham"), ("EH1 1YZ", "Edinburgh"),
            ("LS1 4AP", "Leeds")),
           ("High Street", "Victoria Road", "King's Road", "Station Road", "Church Lane"), True, "PO Box {n}",
           ("Oliver", "Emily", "James", "Charlotte", "George", "Sophie", "Harry", "Amelia", "William"),
           ("Smith", "Jones", "Taylor", "Brown", "Williams", "Wilson", "Evans", "Thomas", "Wright"),
           ("Engineering", "Logistics", "Foods", "Print", "Instruments"),
           "+44 20 #### ####", "+44 7### ######", "GB#########"),
    Locale("US", "USD", "Inc.", "com",
           (("10001", "New York"), ("60601", "Chicago"), ("78701", "Austin"), ("98101", "Seattle"),
            ("02108", "Boston")),
           ("Main Street", "Market Street", "5th Avenue", "Elm Street", "Lake Shore Drive"), True,
           "P.O. Box {n}",
           ("Michael", "Jennifer", "David", "Jessica", "Robert", "Ashley", "Daniel", "Emily", "Chris"),
           ("Johnson", "Miller", "Davis", "Garcia", "Rodriguez", "Anderson", "Clark", "Lewis", "Walker"),
           ("Industries", "Systems", "Supply", "Analytics", "Manufacturing"),
           "+1 212 555 ####", "+1 917 555 ####", ""),
    Locale("ES", "EUR", "S.L.", "es",
           (("28013", "Madrid"), ("08002", "Barcelona"), ("46002", "Valencia"), ("41001", "Sevilla")),
           ("Calle Mayor", "Gran Vía", "Paseo de Gracia", "Calle de Alcalá"), False, "Apartado {n}",
           ("Lucía", "Javier", "Carmen", "Pablo", "Marta", "Diego", "Elena", "Sergio"),
           ("García", "Fernández", "López", "Martínez", "Sánchez", "Romero", "Navarro", "Torres"),
           ("Construcciones", "Alimentación", "Logística", "Ingeniería"),
           "+34 91 ### ## ##", "+34 6## ### ###", "ESB########"),
    Locale("IT", "EUR", "S.r.l.", "it",
           (("20121", "Milano"), ("00184", "Roma"), ("10121", "Torino"), ("40121", "Bologna")),
           ("Via Roma", "Corso Vittorio Emanuele II", "Via Garibaldi", "Via Dante"), False, "Casella Postale {n}",
           ("Giulia", "Marco", "Francesca", "Luca", "Chiara", "Alessandro", "Sara", "Matteo"),
           ("Rossi", "Russo", "Ferrari", "Esposito", "Bianchi", "Romano", "Colombo", "Ricci"),
           ("Meccanica", "Tessile", "Alimentari", "Arredamenti"),
           "+39 02 #### ####", "+39 3## ### ####", "IT###########"),
    Locale("CH", "CHF", "AG", "ch",
           (("8001", "Zürich"), ("1204", "Genève"), ("4051", "Basel"), ("3011", "Bern")),
           ("Bahnhofstrasse", "Rue du Rhône", "Marktgasse", "Seestrasse"), False, "Postfach {n}",
           ("Nina", "Lukas", "Laura", "Simon", "Andrea", "Reto", "Claudia", "Beat"),
           ("Meier", "Keller", "Huber", "Brunner", "Baumann", "Frei", "Zimmermann", "Graf"),
           ("Präzision", "Uhren", "Pharma", "Messtechnik"),
           "+41 44 ### ## ##", "+41 79 ### ## ##", "CHE-###.###.### MWST"),
    Locale("PL", "PLN", "Sp. z o.o.", "pl",
           (("00-001", "Warszawa"), ("30-001", "Kraków"), ("50-001", "Wrocław"), ("80-001", "Gdańsk")),
           ("ul. Marszałkowska", "ul. Floriańska", "ul. Długa", "ul. Piotrkowska"), False, "Skrytka pocztowa {n}",
           ("Anna", "Piotr", "Katarzyna", "Tomasz", "Agnieszka", "Paweł", "Magdalena", "Krzysztof"),
           ("Nowak", "Kowalski", "Wiśniewski", "Wójcik", "Kamińska", "Lewandowski", "Zielińska"),
           ("Budownictwo", "Logistyka", "Meble", "Elektronika"),
           "+48 22 ### ## ##", "+48 5## ### ###", "PL##########"),
)

BRANDS = (
    "Nordlys", "Polaris", "Atlas", "Fjordline", "Granite", "Kestrel", "Meridian", "Aurora", "Vega", "Boreal",
    "Helios", "Cobalt", "Linden", "Alder", "Tidewater", "Ironbridge", "Silverline", "Bluestone", "Redwood",
    "Skyline", "Harbor", "Summit", "Evergreen", "Crescent", "Pioneer", "Zenith", "Orion", "Ember", "Larkspur",
    "Quarry", "Northwind", "Cedar", "Lumen", "Solstice", "Trident", "Aspen",
)
TRADES = (
    "Logistics", "Engineering", "Foods", "Textiles", "Software", "Instruments", "Marine", "Packaging", "Energy",
    "Medical", "Furniture", "Components", "Tools", "Beverages", "Robotics", "Optics", "Timber", "Chemicals",
)
SUPPLIER_TRADES = (
    "Components", "Packaging", "Steel", "Plastics", "Fasteners", "Electronics", "Freight", "Office Supply",
    "Paper", "Hydraulics", "Bearings", "Cables",
)
DEPARTMENTS = ("Head office", "Purchasing", "Finance", "Operations", "Accounts payable")
POSITIONS = (
    "Chief Executive Officer", "Chief Financial Officer", "Purchasing Manager", "Accounts Payable Clerk",
    "Sales Director", "Logistics Coordinator", "Controller", "IT Manager", "Procurement Specialist",
    "Operations Manager", "Key Account Manager", "Office Manager",
)
CUSTOMER_NOTES = (
    "Prefers invoices by e-mail.", "Annual framework agreement renewed in January.",
    "Deliveries only Monday to Thursday.", "Requires PO number on every invoice.",
    "Discount of 3 % on orders above 10,000.", "Contact finance before changing payment terms.",
)
PROJECTS = (
    ("ERP rollout phase 2", "Second wave of the ERP rollout: purchasing and warehouse modules."),
    ("Warehouse automation", "Pick-to-light and conveyor upgrade in the central warehouse."),
    ("Customer portal", "Self-service portal for order tracking and invoices."),
    ("Nordic expansion", "Open sales offices in Stockholm and Copenhagen."),
    ("ISO 9001 recertification", "Prepare documentation and internal audits for recertification."),
    ("Fleet electrification", "Replace the delivery fleet with electric vans."),
    ("Data warehouse migration", "Move reporting to the new cloud data warehouse."),
    ("Packaging redesign", "Recyclable packaging for the consumer product line."),
    ("Trade fair Hannover", "Stand, logistics and lead follow-up for Hannover Messe."),
    ("Supplier consolidation", "Reduce the number of component suppliers by a third."),
    ("Office relocation Oslo", "Move the Oslo team to the new office at Bjørvika."),
    ("CRM integration", "Synchronise customers and contacts between CRM and ERP."),
    ("Product launch Helix", "Market launch of the Helix sensor family."),
    ("Energy audit", "Measure and reduce energy use in the production halls."),
    ("E-invoicing (Peppol)", "Send and receive invoices through the Peppol network."),
    ("Quality dashboard", "Real-time scrap and rework figures on the shop floor."),
    ("Security awareness training", "Phishing and password training for all employees."),
    ("Spare parts webshop", "Online shop for spare parts and accessories."),
    ("Budget 2027", "Annual budgeting process for all departments."),
    ("Machine park renewal", "Replace three CNC machines in hall B."),
)

_ASCII_FOLD = str.maketrans({"ø": "o", "Ø": "O", "æ": "ae", "Æ": "AE", "ß": "ss", "ł": "l", "Ł": "L",
                             "œ": "oe", "đ": "d", "'": ""})


def ascii_slug(text: str, sep: str = "") -> str:
    """Lower-case ASCII letters and digits only: "Müller Maschinenbau" -> "mullermaschinenbau"."""
    folded = unicodedata.normalize("NFKD", text.translate(_ASCII_FOLD)).encode("ascii", "ignore").decode()
    words = ["".join(ch for ch in word.lower() if ch.isalnum()) for word in folded.split()]
    return sep.join(word for word in words if word)


def _digits(rng: random.Random, pattern: str) -> str:
    return "".join(str(rng.randint(0, 9)) if ch == "#" else ch for ch in pattern)


def _address(rng: random.Random, loc: Locale) -> str:
    street, number = rng.choice(loc.streets), rng.randint(1, 180)
    return f"{number} {street}" if loc.number_first else f"{street} {number}"


def _company(rng: random.Random, loc: Locale, names: set[str], *, supplier: bool) -> dict:
    while True:
        style = rng.random()
        if supplier:
            name = f"{rng.choice(BRANDS)} {rng.choice(SUPPLIER_TRADES)} {loc.suffix}"
        elif style < 0.45:
            name = f"{rng.choice(loc.last_names)} {rng.choice(loc.trades)} {loc.suffix}"
        else:
            name = f"{rng.choice(BRANDS)} {rng.choice(TRADES)} {loc.suffix}"
        if name not in names:
            names.add(name)
            break
    domain = f"{ascii_slug(name.removesuffix(loc.suffix), '-')}.{loc.tld}"
    zip_code, city = rng.choice(loc.cities)
    street = _address(rng, loc)
    if rng.random() < 0.35:  # a separate postal box
        postal1, postal_zip, postal_city = loc.po_box.format(n=rng.randint(10, 9999)), zip_code, city
    else:
        postal1, postal_zip, postal_city = street, zip_code, city
    credit = rng.choice((0, 5000, 10000, 25000, 50000, 100000, 250000))
    invoiced = REFERENCE_DATE - timedelta(days=rng.randint(0, 420)) if rng.random() < 0.85 else None
    row = {
        "NAME": name,
        "DEPARTMENT": rng.choice(DEPARTMENTS) if rng.random() < 0.25 else None,
        "VATNO": _digits(rng, loc.vat) or None,
        "PHONE": _digits(rng, loc.phone),
        "FAX": _digits(rng, loc.phone) if rng.random() < 0.3 else None,
        "EMAIL": f"{rng.choice(('info', 'post', 'orders', 'invoice', 'contact'))}@{domain}",
        "URL": f"https://www.{domain}",
        "POSTALAD1": postal1,
        "POSTALAD2": f"c/o {rng.choice(loc.last_names)}" if rng.random() < 0.08 else None,
        "POSTALAD3": None,
        "POSTALZIP": postal_zip,
        "POSTALCITY": postal_city,
        "STREETAD1": street,
        "STREETZIP": zip_code,
        "STREETCITY": city,
        "COUNTRY": loc.country,
        "CURRENCY": loc.currency if rng.random() < 0.85 else rng.choice(("EUR", "USD")),
        "PAYMENTTERMS": rng.choice(("NET14", "NET30", "NET30", "NET45", "NET60", "PREPAID", "EOM30")),
        "CUSTOMERGROUP": rng.choice([key for key, _ in LISTS["customergroups"]]),
        "CREDITLIMIT": float(credit),
        "BLOCKED": rng.random() < 0.1,
        "BALANCE": round(rng.uniform(0, max(credit, 2000) * 0.8), 2),
        "LASTINVOICEDATE": invoiced.isoformat() if invoiced else None,
        "EMPLOYEES": rng.choice((4, 12, 25, 48, 90, 150, 320, 800, 2400)),
        "NOTES": rng.choice(CUSTOMER_NOTES) if rng.random() < 0.3 else None,
    }
    if supplier:
        del row["CUSTOMERGROUP"]  # a customer-only field
    return row


def _person(rng: random.Random, loc: Locale, domain: str) -> dict:
    first, last = rng.choice(loc.first_names), rng.choice(loc.last_names)
    middle = rng.choice(loc.first_names) if rng.random() < 0.15 else None
    if middle == first:
        middle = None
    born = date(1958, 1, 1) + timedelta(days=rng.randint(0, 42 * 365))
    return {
        "FIRSTNAME": first,
        "MIDDLENAME": middle,
        "LASTNAME": last,
        "TITLE": rng.choice(("Dr.", "Prof.")) if rng.random() < 0.08 else None,
        "POSITION": rng.choice(POSITIONS),
        "EMAIL": f"{ascii_slug(first)}.{ascii_slug(last)}@{domain}",
        "PHONE_DIRECT": _digits(rng, loc.phone),
        "PHONE_MOBILE": _digits(rng, loc.mobile) if rng.random() < 0.8 else None,
        "BIRTHDATE": born.isoformat() if rng.random() < 0.7 else None,
    }


def _project(rng: random.Random, index: int) -> dict:
    name, text = PROJECTS[index % len(PROJECTS)]
    end = REFERENCE_DATE + timedelta(days=rng.randint(-300, 420))
    if end < REFERENCE_DATE:
        status = "DONE" if rng.random() < 0.8 else "ONHOLD"
    else:
        status = rng.choice(("PLANNED", "ACTIVE", "ACTIVE", "ONHOLD"))
    return {
        "NAME": name,
        "TEXT": text,
        "URL": f"https://projects.demo-erp.example/{ascii_slug(name, '-')}",
        "ENDDATE": end.isoformat(),
        "STATUS": status,
        "BUDGET": float(rng.choice((15, 40, 75, 120, 250, 600, 1200)) * 1000),
    }


@dataclass
class SeedData:
    customers: list[dict]
    suppliers: list[dict]
    # (parent actor type, index into customers/suppliers, field values)
    persons: list[tuple[str, int, dict]]
    projects: list[dict]


def generate_seed(customers: int = 40, suppliers: int = 20, persons: int = 80, projects: int = 20) -> SeedData:
    """The Demo ERP's initial content; the same every time (random.Random(42))."""
    rng = random.Random(SEED)
    names: set[str] = set()
    customer_rows: list[tuple[Locale, dict]] = []
    supplier_rows: list[tuple[Locale, dict]] = []
    for i in range(customers):
        loc = LOCALES[i % len(LOCALES)] if i < len(LOCALES) else rng.choice(LOCALES)
        customer_rows.append((loc, _company(rng, loc, names, supplier=False)))
    for _ in range(suppliers):
        loc = rng.choice(LOCALES)
        supplier_rows.append((loc, _company(rng, loc, names, supplier=True)))

    parents = [("Customer", i) for i in range(customers)] + [("Supplier", i) for i in range(suppliers)]
    person_rows: list[tuple[str, int, dict]] = []
    for i in range(persons):
        # Every company gets one person first; the rest go to random companies.
        parent_type, index = parents[i] if i < len(parents) else rng.choice(parents)
        loc, company = (customer_rows if parent_type == "Customer" else supplier_rows)[index]
        domain = company["EMAIL"].split("@", 1)[1]
        person_rows.append((parent_type, index, _person(rng, loc, domain)))

    return SeedData(
        customers=[row for _, row in customer_rows],
        suppliers=[row for _, row in supplier_rows],
        persons=person_rows,
        projects=[_project(rng, i) for i in range(projects)],
    )
