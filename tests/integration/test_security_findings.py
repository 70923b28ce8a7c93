"""One test (or a few) per finding of the outside security review, each failing before its fix.

1. Built-in connectors make every outbound request through the guarded transport (urlguard.guarded_session).
2. The Demo ERP pages: admins only (tests/integration/test_demo_erp_pages.py, the authorization matrix) and absent
   when the demo is off.
3. Low findings: bounded integers (and tests/integration/test_fuzz_routes.py), owner-only instance files, no
   plain-text password in the Demo ERP, a validated X-Request-ID, Cache-Control and CSP, NAT64/6to4/IPv4-compatible
   metadata addresses and Azure's, one message for every unreachable connector (no port-scan oracle), bounded
   concurrent password hashing.

Findings whose fix belongs in a file this change could not touch are pinned with ``xfail(strict=True)``: they
start failing (XPASS) the day the fix lands, so the marker is removed then.
"""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import stat
import threading
import time
import uuid
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests
from sqlalchemy import select

from portal import create_app
from portal.connectors import builtin
from portal.connectors.builtin import tryton_rpc
from portal.connectors.builtin.demo import DemoErpConnector
from portal.extensions import db
from portal.models import AuditEvent
from portal.security import passwords, urlguard
from portal.security.headers import REQUEST_ID_RE
from portal.security.params import MAX_INT, BoundedIntConverter, PortalRequest, coerce_int
from tests.conftest import login, make_user

GUID = "6f1c1d3e-2b7a-4c55-9d0e-0123456789ab"


# --- helpers ---------------------------------------------------------------------------------------------------


class Listener:
    """A loopback TCP listener that records every connection and every byte it receives (and never answers)."""

    def __init__(self, host: str = "127.0.0.1"):
        self.sock = socket.socket()
        self.sock.bind((host, 0))
        self.sock.listen(16)
        self.sock.settimeout(0.1)
        self.port = self.sock.getsockname()[1]
        self.connections = 0
        self.received = b""
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self):
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except (TimeoutError, OSError):
                continue
            self.connections += 1
            threading.Thread(target=self._read, args=(conn,), daemon=True).start()

    def _read(self, conn):
        """Read until the peer closes or the listener stops; never answer, never hang up first."""
        conn.settimeout(0.1)
        try:
            while not self._stop.is_set():
                try:
                    chunk = conn.recv(65536)
                except TimeoutError:
                    continue
                if not chunk:
                    break
                self.received += chunk
        except OSError:
            pass
        finally:
            conn.close()

    def close(self):
        time.sleep(0.3)  # let a connection in flight be counted
        self._stop.set()
        self._thread.join(timeout=2)
        self.sock.close()


@contextmanager
def listening():
    listener = Listener()
    try:
        yield listener
    finally:
        listener.close()


@contextmanager
def http_server(handler_class):
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler_class)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def _config_info(service, url: str) -> dict:
    """A ConnectionInfo for any built-in connector: its text fields all point at ``url``, numbers small."""
    fields = service.handle("GetConfigData", {})["FieldMetaDataObjects"]
    info = {}
    for meta in fields:
        kind = meta["FieldType"]
        if kind in ("Text", "Password"):
            info[meta["FieldKey"]] = url
        elif kind in ("Integer", "Double"):
            info[meta["FieldKey"]] = "2"
        elif kind == "Checkbox":
            info[meta["FieldKey"]] = "false"
        elif meta["DefaultValue"]:
            info[meta["FieldKey"]] = meta["DefaultValue"]
    return info


def _answers(service, info: dict) -> list[dict]:
    """Every call that may open a connection: test the config, save it, test the connection, read from it."""
    guid = str(uuid.uuid4())
    return [
        service.handle("TestConfigData", {"ConnectionInfo": info}),
        service.handle("SaveConnection", {"ConnectionGuid": guid, "ConnectionInfo": info}),
        service.handle("TestConnection", {"ConnectionGuid": guid}),
        service.handle("GetActors", {"ConnectionGuid": guid, "ActorType": "Customer", "ErpKeys": ["1"]}),
    ]


# --- 1. every outbound request of a built-in connector is guarded ------------------------------------------------


@pytest.mark.parametrize("name", builtin.names())
@pytest.mark.parametrize("how", ["outside the allowlist", "an unspecified address", "dns rebinding"])
def test_every_builtin_connector_refuses_a_denied_address_and_sends_nothing(tmp_path, monkeypatch, name, how):
    with listening() as listener:
        if how == "outside the allowlist":  # loopback, with only a LAN allowed
            networks, url = ["10.0.0.0/8"], f"http://127.0.0.1:{listener.port}"
        elif how == "an unspecified address":  # 0.0.0.0 reaches this host on Linux
            networks, url = [], f"http://0.0.0.0:{listener.port}"
        else:  # the name resolved to an allowed LAN address when checked, the socket meets loopback
            networks, url = ["10.0.0.0/8"], f"http://localhost:{listener.port}"
            monkeypatch.setattr(urlguard, "resolve_host", lambda host, port: ["10.9.9.9"])
        config = {"INSTANCE_PATH": str(tmp_path), "DEMO_ERP_DB": str(tmp_path / "demo.db"),
                  "TRYTON_CONNECTOR_STATE": str(tmp_path / "tryton.sqlite"), "CONNECTOR_ALLOWED_NETWORKS": networks,
                  "ENCRYPTION_KEYS": []}
        service = builtin.get_builtin(name, config)
        answers = _answers(service, _config_info(service, url))
    # nothing reached the address: no byte (the password above all), and no connection unless the name only
    # turned into that address when the socket connected (the peer check then closed it before sending)
    assert listener.received == b"", f"{name} sent {listener.received[:200]!r} to a denied address"
    if how != "dns rebinding":
        assert listener.connections == 0
    for answer in answers:  # never a sign that a request went out
        assert answer["IsOk"] or answer["ErrorCode"] not in ("ERP_UNREACHABLE", "ERP_TIMEOUT", "ERP_ERROR",
                                                             "INTERNAL_ERROR"), (name, answer)
    if name == "tryton":
        test_config, save, test_connection, get_actors = answers
        assert test_config["ErrorCode"] == "ADDRESS_NOT_ALLOWED", test_config
        if how == "dns rebinding":  # saved (the name looked fine), refused when the connection opens
            assert save["IsOk"]
            assert test_connection["ErrorCode"] == get_actors["ErrorCode"] == "ADDRESS_NOT_ALLOWED"
        else:
            assert save["ErrorCode"] == "ADDRESS_NOT_ALLOWED", save


def test_the_tryton_client_only_sends_through_the_guarded_transport():
    with pytest.raises(TypeError):
        tryton_rpc.TrytonClient("http://127.0.0.1:1", "db", "u", "p", http=requests.Session())
    client = tryton_rpc.TrytonClient("http://127.0.0.1:1", "db", "u", "p", allowed_networks=["10.0.0.0/8"])
    assert isinstance(client._http, urlguard.GuardedSession)
    with pytest.raises(tryton_rpc.TrytonAddressNotAllowed):
        client.server_version()


class _Redirect(BaseHTTPRequestHandler):
    hits: list[str] = []

    def do_GET(self):  # noqa: N802
        type(self).hits.append(self.path)
        if self.path == "/start":
            self.send_response(302)
            self.send_header("Location", "/target")
            self.send_header("Content-Length", "0")
            self.end_headers()
        else:
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

    do_POST = do_GET  # noqa: N815

    def log_message(self, *args):
        pass


def test_the_guarded_session_never_follows_a_redirect_nor_speaks_another_scheme():
    _Redirect.hits = []
    with http_server(_Redirect) as base, urlguard.guarded_session() as session:
        response = session.get(f"{base}/start", allow_redirects=True, timeout=5)
        assert response.status_code == 302 and _Redirect.hits == ["/start"]
        response = session.post(f"{base}/start", timeout=5)
        assert response.status_code == 302 and _Redirect.hits == ["/start", "/start"]
    with urlguard.guarded_session() as session, pytest.raises(requests.exceptions.InvalidSchema):
        session.get("file:///etc/passwd")
    assert urlguard.guarded_session({"CONNECTOR_ALLOWED_NETWORKS": ["10.0.0.0/8"]}).adapters[
        "http://"].allowed_networks[0].compressed == "10.0.0.0/8"


# --- 2. Demo ERP pages only with the demo on ---------------------------------------------------------------------


def test_demo_erp_pages_are_404_when_the_demo_is_off(app, users):
    assert app.config["DEMO_DATA"] is False
    client = app.test_client()
    login(client, users["alice"])  # even an admin
    for url in ("/demo-erp/", "/demo-erp/customers/", "/demo-erp/customers/C10001/edit"):
        assert client.get(url).status_code == 404
    assert client.post("/demo-erp/customers/C10001/delete").status_code == 404
    home = client.get("/").get_data(as_text=True)
    assert "/demo-erp/" not in home


# --- 3a. integers are bounded ------------------------------------------------------------------------------------


@pytest.mark.parametrize("number", [MAX_INT + 1, 2**63 - 1, 2**63, 2**64, 10**40])
def test_huge_ids_in_paths_are_404(admin_client, number):
    for url in (f"/companies/{number}", f"/contacts/{number}/edit", f"/settings/users/{number}/edit",
                f"/settings/connections/{number}/mappings", f"/erp/company/{number}"):
        assert admin_client.get(url, htmx=True).status_code == 404, url
    assert admin_client.post(f"/erp/company/1/connections/{number}/connect/Customer",
                             htmx=True).status_code == 404


@pytest.mark.parametrize("number", [str(MAX_INT + 1), str(2**63), str(2**64), "-" + str(2**63 + 1)])
def test_huge_integers_in_queries_and_forms_fall_back_to_the_default_or_422(app, admin_client, number):
    assert admin_client.get(f"/settings/audit?page={number}").status_code == 200
    assert admin_client.get(f"/settings/import/erp?connection_id={number}").status_code == 200
    assert admin_client.get(f"/settings/sync/log?connection={number}&run={number}&page={number}").status_code == 200
    response = admin_client.post("/settings/sync/interval", data={"interval_seconds": number}, htmx=True)
    assert response.status_code == 422
    response = admin_client.post("/companies/new", data={"name": "Huge AS", "country_id": number})
    assert response.status_code == 422


def test_the_int_converter_request_and_forms_are_bounded(app):
    assert app.url_map.converters["int"] is BoundedIntConverter
    assert app.request_class is PortalRequest
    with app.test_request_context(f"/?a={2**63}&b=12&c=x&d={MAX_INT}", method="POST", data={"e": str(2**64)}):
        from flask import request

        assert request.args.get("a", 7, type=int) == 7
        assert request.args.get("b", type=int) == 12
        assert request.args.get("c", 7, type=int) == 7
        assert request.args.get("d", type=int) == MAX_INT
        assert request.values.get("e", 3, type=int) == 3
        assert request.args.getlist("a", type=int) == []
    with pytest.raises(ValueError):
        coerce_int(str(2**63))
    with app.test_request_context("/", method="POST", data={"n": str(2**63), "s": str(2**63)}):
        from flask_wtf import FlaskForm
        from wtforms import IntegerField, SelectField

        class Form(FlaskForm):
            class Meta:
                csrf = False

            n = IntegerField()
            s = SelectField(coerce=int, choices=[(1, "one")], validate_choice=False)

        form = Form()
        assert not form.validate()
        assert form.n.data is None and form.n.errors and form.s.errors


def test_a_nul_character_anywhere_in_a_request_is_400(admin_client):
    # PostgreSQL refuses NUL in every text parameter: a search for it was a 500 there
    assert admin_client.get("/contacts?q=%00").status_code == 400
    assert admin_client.get("/companies?q=a%00b", htmx=True).status_code == 400
    assert admin_client.post("/settings/connectors/new", data={"name": "\x00", "url": "builtin:demo"}).status_code == 400
    assert admin_client.post("/settings/lists/country%00/items", data={"name": "x"}).status_code == 400
    assert admin_client.get("/contacts?q=plain").status_code == 200


# --- 3b. owner-only instance files, no plain-text secret in the Demo ERP ----------------------------------------


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_instance_folder_and_databases_are_owner_only(tmp_path):
    instance = tmp_path / "instance"
    database = instance / "portal.db"
    previous = os.umask(0o022)
    try:
        app = create_app({"TESTING": True, "INSTANCE_PATH": str(instance),
                          "SQLALCHEMY_DATABASE_URI": f"sqlite:///{database}", "DEMO_ERP_DB": str(instance / "demo.db"),
                          "SCHEDULER": False}, environ={})
        with app.app_context():
            db.create_all()
            db.session.execute(select(1))
            db.session.commit()
            DemoErpConnector(instance / "demo.db").handle("GetConfigData", {})
            db.engine.dispose()
    finally:
        os.umask(previous)
    assert _mode(instance) == 0o700
    for name in ("portal.db", "portal.db-wal", "portal.db-shm", "secret_key", "encryption_keys", "demo.db",
                 "demo.db-wal", "demo.db-shm"):
        if (instance / name).exists() or not name.endswith(("-wal", "-shm")):
            assert _mode(instance / name) == 0o600, name


def test_an_existing_open_instance_folder_and_database_are_tightened(tmp_path):
    instance = tmp_path / "instance"
    instance.mkdir(mode=0o755)
    os.chmod(instance, 0o755)
    database = instance / "portal.db"
    sqlite3.connect(database).close()
    os.chmod(database, 0o644)
    app = create_app({"TESTING": True, "INSTANCE_PATH": str(instance), "SQLALCHEMY_DATABASE_URI": f"sqlite:///{database}",
                      "SCHEDULER": False}, environ={})
    with app.app_context():
        db.session.execute(select(1))
        db.engine.dispose()
    assert _mode(instance) == 0o700 and _mode(database) == 0o600


def test_the_demo_erp_keeps_no_plain_text_password(tmp_path):
    path = tmp_path / "demo.db"
    erp = DemoErpConnector(path)
    info = {"CompanyDb": "DEMO", "ApiUser": "api", "ApiPassword": "demo"}
    assert erp.handle("SaveConnection", {"ConnectionGuid": GUID, "ConnectionInfo": info})["IsOk"]
    with sqlite3.connect(path) as conn:
        stored = json.loads(conn.execute("SELECT config FROM connections").fetchone()[0])
    assert stored["ApiPassword"] != "demo" and stored["ApiPassword"].startswith("pbkdf2_sha256$")
    assert erp.handle("TestConnection", {"ConnectionGuid": GUID})["IsOk"]  # still checkable
    wrong = {**info, "ApiPassword": "not-demo"}
    erp.handle("SaveConnection", {"ConnectionGuid": GUID, "ConnectionInfo": wrong})
    assert erp.handle("TestConnection", {"ConnectionGuid": GUID})["ErrorCode"] == "AUTHENTICATION_FAILED"


def test_a_demo_database_from_before_loses_its_plain_text_password(tmp_path):
    path = tmp_path / "demo.db"
    DemoErpConnector(path).handle("GetConfigData", {})
    with sqlite3.connect(path) as conn:  # as an older version stored it
        conn.execute("INSERT INTO connections (guid, config, saved_at) VALUES (?, ?, '')",
                     (GUID, json.dumps({"CompanyDb": "DEMO", "ApiUser": "api", "ApiPassword": "demo"})))
    erp = DemoErpConnector(path)
    assert erp.handle("TestConnection", {"ConnectionGuid": GUID})["IsOk"]
    with sqlite3.connect(path) as conn:
        assert b"\"demo\"" not in conn.execute("SELECT config FROM connections").fetchone()[0].encode()


# --- 3c. X-Request-ID, Cache-Control, CSP --------------------------------------------------------------------------


@pytest.mark.parametrize("sent", ["a" * 65, "x" * 10_000, "bad id", "<script>", "id;drop", "é", ""])
def test_an_unusable_request_id_is_replaced(app, client, sent):
    response = client.post("/login", data={"email": "nobody@example.com", "password": "wrong"},
                           headers={"X-Request-ID": sent})
    echoed = response.headers["X-Request-ID"]
    assert echoed != sent and REQUEST_ID_RE.fullmatch(echoed) and len(echoed) <= 64
    with app.app_context():
        event = db.session.scalars(select(AuditEvent).order_by(AuditEvent.id.desc())).first()
        assert event.action == "auth.login_failed" and event.request_id == echoed


def test_a_plain_request_id_is_kept(client):
    sent = "req-2026.12_05-" + "a" * 49
    assert len(sent) == 64
    assert client.get("/login", headers={"X-Request-ID": sent}).headers["X-Request-ID"] == sent


def test_pages_are_not_cached_and_the_csp_closes_base_and_form_targets(admin_client, client):
    for response in (admin_client.get("/companies"), admin_client.get("/settings/sync"), client.get("/login"),
                     admin_client.get("/companies", htmx=True)):
        assert response.headers["Cache-Control"] == "no-store"
        csp = response.headers["Content-Security-Policy"]
        assert "base-uri 'none'" in csp and "form-action 'self'" in csp and "object-src 'none'" in csp
    static = client.get("/static/css/app.css")
    assert static.status_code == 200 and "no-store" not in static.headers.get("Cache-Control", "")


# --- 3d. SSRF deny list --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("ip", [
    "64:ff9b::a9fe:a9fe",  # NAT64 of 169.254.169.254
    "64:ff9b::169.254.169.254",
    "64:ff9b:1::a9fe:a9fe",  # local-use NAT64 (/96 layout)
    "64:ff9b:1:a9fe:a9:fe00::",  # local-use NAT64 (/48 layout)
    "::a9fe:a9fe",  # IPv4-compatible
    "::169.254.169.254",
    "2002:a9fe:a9fe::1",  # 6to4
    "2002:a83f:8110::",  # 6to4 of Azure's 168.63.129.16
    "168.63.129.16",  # Azure wireserver
    "64:ff9b::a83f:8110",
    "::ffff:168.63.129.16",
    "64:ff9b::a9fe:101",  # NAT64 of link-local 169.254.1.1
])
def test_metadata_addresses_in_every_ipv6_disguise_are_refused(ip):
    assert not urlguard.address_allowed(ip)
    assert not urlguard.address_allowed(ip, ["::/0", "0.0.0.0/0"])


@pytest.mark.parametrize("ip", ["::1", "64:ff9b::a00:1", "2002:a00:1::1", "64:ff9b::808:808", "2001:db8::1"])
def test_ordinary_ipv6_addresses_stay_allowed(ip):
    assert urlguard.address_allowed(ip)


def test_a_url_with_a_nat64_metadata_literal_is_refused_at_save_time():
    with pytest.raises(urlguard.UrlNotAllowed, match="metadata"):
        urlguard.check_connector_url("http://[64:ff9b::a9fe:a9fe]/latest/meta-data")


# --- 3e. no port-scan oracle ------------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class _NotTryton(BaseHTTPRequestHandler):
    def do_POST(self):  # noqa: N802
        self.send_response(405)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


def _tryton_probe(tmp_path, url: str) -> dict:
    connector = builtin.get_builtin("tryton", {"TRYTON_CONNECTOR_STATE": str(tmp_path / f"{uuid.uuid4()}.sqlite"),
                                               "ENCRYPTION_KEYS": []})
    return connector.handle("TestConfigData", {"ConnectionInfo": {
        "url": url, "database": "erp", "user": "admin", "password": "secret", "timeout": "1"}})


def test_tryton_gives_one_answer_for_a_closed_port_a_silent_one_and_another_server(tmp_path):
    answers = {}
    answers["closed"] = (_tryton_probe(tmp_path, url := f"http://127.0.0.1:{_free_port()}"), url)
    with listening() as silent:  # accepts and never answers: "open" to a port scanner
        answers["silent"] = (_tryton_probe(tmp_path, url := f"http://127.0.0.1:{silent.port}"), url)
    with http_server(_NotTryton) as url:  # some other HTTP service
        answers["other"] = (_tryton_probe(tmp_path, url), url)
    seen = {(answer["ErrorCode"], answer["UserExplanation"].replace(url, "URL")) for answer, url in answers.values()}
    assert len(seen) == 1, seen
    (code, text), = seen
    assert code == "ERP_UNREACHABLE" and "not reachable or did not answer within 1 seconds" in text
    assert all(answer["TechExplanation"] for answer, _ in answers.values())  # the details stay for the log


# --- 3f. bounded password hashing -----------------------------------------------------------------------------------


def test_at_most_two_password_hashes_run_at_once(monkeypatch):
    running, peak, lock = 0, 0, threading.Lock()

    def slow(*args):
        nonlocal running, peak
        with lock:
            running += 1
            peak = max(peak, running)
        time.sleep(0.05)
        with lock:
            running -= 1
        return True

    monkeypatch.setattr(passwords, "check_password_hash", slow)
    monkeypatch.setattr(passwords, "generate_password_hash", slow)
    threads = [threading.Thread(target=passwords.check_password if i % 2 else passwords.hash_password,
                                args=("h", "p") if i % 2 else ("p",)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert peak == passwords.MAX_CONCURRENT == 2


def test_the_bounded_helpers_hash_and_check_for_real():
    hashed = passwords.hash_password("correct horse")
    assert hashed.startswith("scrypt:") and passwords.check_password(hashed, "correct horse")
    assert not passwords.check_password(hashed, "wrong")


def test_a_hashing_flood_answers_503_not_500(app, client, monkeypatch):
    def busy(*args):
        raise passwords.PasswordHashingBusy("Too many sign-ins at once; try again in a moment.")

    with app.app_context():
        make_user("flood@example.com")
    from portal.models import User

    monkeypatch.setattr(User, "check_password", lambda self, password: busy())
    response = client.post("/login", data={"email": "flood@example.com", "password": "x"})
    assert response.status_code == 503 and response.headers["Retry-After"] == "5"


def test_sign_in_goes_through_the_bounded_hashing(app, monkeypatch):
    calls = []
    monkeypatch.setattr(passwords, "check_password_hash", lambda *a: calls.append(a) or True)
    monkeypatch.setattr(passwords, "generate_password_hash", lambda *a: calls.append(a) or "scrypt:x")
    from portal.models import User

    user = User(email="x@example.com", name="X")
    user.set_password("p")
    user.check_password("p")
    assert len(calls) == 2
