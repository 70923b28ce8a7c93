"""What the Tryton home gets: the pinned Tryton series and packages (``REQUIREMENTS``, ``CONSTRAINTS``), the modules
activated in the database and the countries whose subdivisions are imported.

Only the Tryton virtualenv installs these (``venv.install``); the portal never imports Tryton."""

from __future__ import annotations

TRYTON_SERIES = "8.0"  # the LTS line; every module pins trytond<8.1, so all stay on the same series
#: What we install, exactly pinned (the Tryton modules and the two tools used by the country import).
REQUIREMENTS = (
    "trytond==8.0.12",
    "trytond-party==8.0.4",
    "trytond-company==8.0.1",
    "trytond-currency==8.0.0",
    "trytond-country==8.0.0",
    "trytond-project==8.0.4",
    "trytond-party-relationship==8.0.0",
    "proteus==8.0.0",  # Tryton's client library: used only by trytond's own country-import script
    "pycountry==26.2.16",  # ISO 3166 data for that script
)
#: Their dependencies, pinned too (pip -c), as resolved on 2026-11-25.
CONSTRAINTS = REQUIREMENTS + (
    "trytond-timesheet==8.0.0",
    "trytond-company-work-time==8.0.0",
    "argon2-cffi==25.1.0",
    "argon2-cffi-bindings==26.2.0",
    "cffi==2.1.1",
    "defusedxml==0.7.1",
    "Genshi==0.7.12",
    "lxml==6.1.3",
    "MarkupSafe==3.0.4",
    "polib==1.2.0",
    "puremagic==1.30",
    "pwdlib==0.3.1",
    "pycparser==3.12",
    "python-dateutil==4.0.0",
    "python-sql==1.8.1",
    "python-stdnum==2.2",
    "relatorio==1.0.0",
    "simpleeval==1.0.8",
    "tzdata==2026.6",
    "Werkzeug==3.1.9",
)
#: Modules activated in the database (their dependencies come with --activate-dependencies).
MODULES = ("party", "company", "project", "party_relationship", "country", "currency")
#: Countries whose subdivisions (states, regions …) the default setup imports (all 249 countries are
#: always imported; all ~5000 subdivisions take ~45 s more: ``setup --all-subdivisions``).
SUBDIVISION_COUNTRIES = ("AT", "CH", "DE", "DK", "FI", "NL", "NO", "SE", "US", "CA")
