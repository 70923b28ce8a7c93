"""A small seeded world for the route sweeps (authorization matrix, fuzzing): one persona per role, a connection to
the fake connector with an explicit scope, CRM records (one linked), runs, lists — and the real id for every URL
parameter of every route in ``app.url_map``.

Roles (``ROLES``):

=================  =====================================================================================
``anonymous``      not signed in
``no_licence``     a user without an ERP Sync licence
``out_of_scope``   a licensed user outside the connection's scope
``can_connect``    a licensed user in the scope with *can connect*
``can_create``     a licensed user in the scope with *can connect* and *can create in ERP*
``admin``          an admin (licensed, but not in the connection's scope: admin rights give no ERP access)
=================  =====================================================================================

Use inside an app context: ``world = build(fake)``; then ``world.url(rule)`` is the rule's URL with real ids, and
``world.users[role]`` the persona's id.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from sqlalchemy import select
from werkzeug.routing import Rule

from portal.database import utcnow
from portal.extensions import db
from portal.models import (
    AlertRule,
    Connection,
    ConnectionAccess,
    Contact,
    CrmList,
    ListItem,
    Project,
    RunKind,
    SyncRun,
    UserGroup,
)
from tests import sync_support
from tests.conftest import csrf_token_from, login, make_user

ROLES = ("anonymous", "no_licence", "out_of_scope", "can_connect", "can_create", "admin")

# What each role holds; a rule needs one of these (tests/integration/test_authorization_matrix.py).
CAPABILITIES: dict[str, frozenset[str]] = {
    "anonymous": frozenset(),
    "no_licence": frozenset({"login"}),
    "out_of_scope": frozenset({"login", "licensed"}),
    "can_connect": frozenset({"login", "licensed", "in_scope", "can_connect"}),
    "can_create": frozenset({"login", "licensed", "in_scope", "can_connect", "can_create"}),
    "admin": frozenset({"login", "licensed", "admin"}),
}

# ERP tab endpoints that act on a record not yet linked (the others get the linked company)
UNLINKED_ENDPOINTS = {"erp_tab.connect_dialog", "erp_tab.search", "erp_tab.advanced", "erp_tab.advanced_search",
                      "erp_tab.compare", "erp_tab.connect", "erp_tab.create_form", "erp_tab.create"}


@dataclass
class World:
    users: dict[str, int]
    target_user: int  # the user the user-admin routes act on (never the acting persona)
    group: int
    connection: int
    company: int  # linked to an ERP actor on the connection
    free_company: int  # not linked
    contact: int
    project: int
    erp_key: str  # the linked company's actor
    free_erp_key: str  # an actor nobody is linked to
    field: int  # an ERP field of the connection (Customer)
    list_field: int  # the Customer's list field (country)
    list_item: int
    sync_run: int
    import_run: int
    alert_rule: int = 0
    user_field: int = 0  # a user-defined field of companies (Settings → Fields)
    extra_query: dict[str, dict] = field(default_factory=dict)

    def values(self, rule: Rule) -> dict:
        """A real value for every argument of ``rule``."""
        endpoint = rule.endpoint
        record = self.free_company if endpoint in UNLINKED_ENDPOINTS else self.company
        if endpoint.startswith("crm.contact"):
            record = self.contact
        elif endpoint.startswith("crm.project"):
            record = self.project
        run = self.import_run if endpoint.startswith("admin.import_") else self.sync_run
        field_id = self.list_field if endpoint.startswith("admin.list_mapping") else self.field
        if endpoint.startswith("admin.field"):
            field_id = self.user_field
        table = {
            "record_id": record, "crm_type": "company", "connection_id": self.connection, "actor_type": "Customer",
            "field_id": field_id, "user_id": self.target_user, "group_id": self.group, "run_id": run,
            "item_id": self.list_item, "list_name": CrmList.COUNTRY.value, "entry_id": self.connection,
            "direction": "up", "connector_id": self._connector_id(), "kind": "customers", "erp_key": "C10001",
            "filename": "css/app.css", "rule_id": self.alert_rule,
            "rest": "no-such-endpoint", "token_id": 1,  # the API's JSON 404 for any other path under /api/v1/
        }
        missing = rule.arguments - table.keys()
        assert not missing, f"{rule.rule}: no world value for {sorted(missing)} (add it to security_world.World)"
        return {name: table[name] for name in rule.arguments}

    def _connector_id(self) -> int:
        return db.session.get(Connection, self.connection).connector_id

    def url(self, rule: Rule, **overrides) -> str:
        values = {**self.values(rule), **overrides}
        _, path = rule.build(values, append_unknown=False)
        query = self.extra_query.get(rule.endpoint)
        if query:
            path += "?" + "&".join(f"{k}={v}" for k, v in query.items())
        return path


def build(fake) -> World:
    """Seed the world in the current app context (``fake``: the module's FakeConnector)."""
    users = {
        "no_licence": make_user("nolicence@example.com", name="No Licence").id,
        "out_of_scope": make_user("outside@example.com", licence=True, name="Out Of Scope").id,
        "can_connect": make_user("connect@example.com", licence=True, name="Can Connect").id,
        "can_create": make_user("create@example.com", licence=True, name="Can Create").id,
        "admin": make_user("admin@example.com", role="admin", licence=True, name="The Admin").id,
    }
    target = make_user("target@example.com", name="Target User")
    group = UserGroup(name="Sales", description="")
    group.members.append(target)
    db.session.add(group)

    connection_id = sync_support.make_connection(fake)
    connection = db.session.get(Connection, connection_id)
    connection.all_access = False
    connection.all_can_create = False
    connection.access.append(ConnectionAccess(user_id=users["can_connect"], can_connect=True, can_create=False))
    connection.access.append(ConnectionAccess(user_id=users["can_create"], can_connect=True, can_create=True))
    db.session.commit()

    company_id, erp_key, _link = sync_support.link_company(fake, connection_id, name="Linked AS", phone="1",
                                                           email="linked@example.com")
    free_key = fake.add_actor("Customer", {"name": "Free AS"})
    from portal.models import Company

    free = Company(name="Free AS")
    contact = Contact(first_name="Kari", last_name="Nord", company_id=company_id)
    project = Project(name="Roll-out")
    db.session.add_all([free, contact, project])
    config = connection.actor_type("Customer")
    fields = {f.field_key: f.id for f in config.fields}
    item = db.session.scalar(select(ListItem).where(ListItem.list_name == CrmList.COUNTRY).order_by(ListItem.id))
    now = utcnow()
    sync_run = SyncRun(connection_id=connection_id, kind=RunKind.SYNC, status="succeeded", trigger="manual",
                       started_at=now, finished_at=now)
    import_run = SyncRun(connection_id=connection_id, kind=RunKind.IMPORT, status="succeeded", trigger="manual",
                         options={"connection_id": connection_id, "actor_type": "Customer"}, started_at=now,
                         finished_at=now)
    alert_rule = AlertRule(name="Ops", channel="email", recipients="ops@example.com", webhook_url="",
                           on_state_change=True, daily_digest=False, active=True, digest_error="")
    db.session.add_all([sync_run, import_run, alert_rule])
    db.session.commit()
    from portal.services import user_fields

    user_field = user_fields.create("company", label="Key account", field_type="checkbox")
    # The Create form opens only from a search's results: the proof such a search hands the can-create persona
    # (the others are refused before the proof is looked at).
    from portal.erp_tab import search_proof

    nonce = "w" * 24
    proof = search_proof.issue(users["can_create"], connection_id, "company", free.id, "Customer", nonce)
    return World(users=users, target_user=target.id, group=group.id, connection=connection_id, company=company_id,
                 free_company=free.id, contact=contact.id, project=project.id, erp_key=erp_key, free_erp_key=free_key,
                 field=fields["name"], list_field=fields["country"], list_item=item.id, sync_run=sync_run.id,
                 import_run=import_run.id, alert_rule=alert_rule.id, user_field=user_field.id,
                 extra_query={"erp_tab.compare": {"erp_key": free_key},
                              "erp_tab.create_form": {"nonce": nonce, "proof": proof},
                              "admin.default_new": {"field_id": fields["name"]},
                              "api.record_unlink": {"connection_id": connection_id}})


def signed_in_client(app, world: World, role: str):
    """A test client for ``role`` holding a valid CSRF token (``client.csrf``), sent with every request as
    ``X-CSRFToken``; ``client.relogin()`` puts the persona back (after a sign-out)."""
    client = app.test_client()
    if role != "anonymous":
        login(client, world.users[role])
    page = client.get("/login" if role == "anonymous" else "/").get_data(as_text=True)
    token = csrf_token_from(page) if '"X-CSRFToken"' in page else re.search(
        r'name="csrf_token" type="hidden" value="([^"]+)"', page).group(1)
    with client.session_transaction() as session:
        secret = session["csrf_token"]

    def relogin() -> None:
        with client.session_transaction() as session:
            session["csrf_token"] = secret
            if role != "anonymous":
                session["user_id"] = world.users[role]

    client.environ_base["HTTP_X_CSRFTOKEN"] = token
    client.csrf = token
    client.relogin = relogin
    return client


def relogin(client, world: World, role: str) -> None:
    """Put ``role``'s persona (back) into the client's session (nobody for ``anonymous``)."""
    with client.session_transaction() as session:
        session.pop("user_id", None)
        if role != "anonymous":
            session["user_id"] = world.users[role]
