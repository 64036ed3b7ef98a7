"""Two of everything: two gunicorn servers and two task workers on PostgreSQL, a Redis queue and limits, the S3 store
on moto's server and the CRM emulator, all over loopback. A mixed load runs for about half a minute — card payments
with duplicate notifications, invoices, a staff statement upload, team changes while the CRM is down and after it is
back, documents fetched from the server that did not issue them — one server and one worker are SIGKILLed in the
middle, and then every payment is settled once, invoice numbers have no gaps, every CRM change reached the CRM
once, and every document comes back from two servers with its SHA-256 intact."""

from __future__ import annotations

import hashlib
import io
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
import redis
import requests
import sqlalchemy as sa

from devtools.crm_emulator import Emulator, running_emulator
from portal.accounts.models import Account, User
from portal.db import utcnow
from portal.documents.models import Invoice, StoredFile, Upd
from portal.payments.models import Receipt, SandboxPayment
from portal.payments.providers import get_provider
from portal.payments.providers.sandbox import SIGNATURE_HEADER, WEBHOOK_PATH, sign
from portal.seats.crm.base import CrmAccountInfo
from portal.seats.crm.factory import CrmSettings, client_factory
from portal.seats.crm.models import CrmConnection, CrmOutbox
from portal.seats.crm.service import connect_account
from portal.seats.crm.sync import sync_account
from portal.tasks.models import TaskRun
from tests.bench.http import ROOT, free_port, sign_in
from tests.documents.factories import IP, give_requisites, payment, statement
from tests.payments.test_ledger import check_invariants

REDIS_HOST = os.environ.get("TEST_REDIS_HOST_URL", "redis://127.0.0.1:6379")
QUEUE_DB, LIMITS_DB = 8, 9
SECRET = "k" * 64
WEBHOOK_SECRET = "two-of-everything-webhook"
OWNER_A, ACCOUNTANT_A, OWNER_B, STAFF = "+79990000001", "+79990000002", "+79990000003", "+79990000099"
LOAD_SECONDS = 30
KILL_AFTER = 12
SETTLE_SECONDS = 90


@pytest.fixture
def shared_redis() -> Iterator[tuple[str, str]]:
    urls = (f"{REDIS_HOST}/{QUEUE_DB}", f"{REDIS_HOST}/{LIMITS_DB}")
    clients = [redis.Redis.from_url(u, socket_connect_timeout=2) for u in urls]
    try:
        for c in clients:
            c.flushdb()
    except redis.RedisError as exc:
        if os.environ.get("CI") == "true":
            pytest.fail(f"Redis is required under CI=true ({REDIS_HOST}): {exc}")
        pytest.skip(f"needs Redis at {REDIS_HOST} (databases {QUEUE_DB} and {LIMITS_DB}): {exc}")
    yield urls
    for c in clients:
        c.flushdb()


@pytest.fixture
def crm() -> Iterator[tuple[str, Emulator]]:
    with running_emulator() as pair:
        yield pair


@pytest.fixture
def app_config(
    app_config: dict[str, Any], pg_url: str, s3_store: dict[str, str], crm: tuple[str, Emulator]
) -> dict[str, Any]:
    app_config.update(s3_store)
    # The servers' secret: the CRM tokens this process stores are encrypted with a key derived from it.
    app_config.update(
        SECRET_KEY=SECRET, CRM_BACKEND="emulator", CRM_EMULATOR_URL=crm[0], SANDBOX_WEBHOOK_SECRET=WEBHOOK_SECRET
    )
    return app_config


# ----- processes -----


class Processes:
    """The servers and workers, each in a process group of its own so that a SIGKILL takes the whole of it."""

    def __init__(self, tmp: Path, env: dict[str, str]) -> None:
        self.tmp = tmp
        self.env = env
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.logs: dict[str, Path] = {}

    def _start(self, name: str, argv: list[str], extra_env: dict[str, str]) -> None:
        instance = self.tmp / f"instance-{name}"  # nothing shared through a local folder
        self.logs[name] = self.tmp / f"{name}.log"
        log = self.logs[name].open("wb")
        self.procs[name] = subprocess.Popen(
            argv,
            cwd=ROOT,
            env={**os.environ, **self.env, "INSTANCE_PATH": str(instance), **extra_env},
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()

    def server(self, name: str, port: int) -> str:
        gunicorn = str(Path(sys.executable).parent / "gunicorn")
        argv = [gunicorn, "-w", "1", "--threads", "4", "-b", f"127.0.0.1:{port}", "--log-level", "warning", "wsgi:app"]
        self._start(name, argv, {})
        return f"http://127.0.0.1:{port}"

    def worker(self, name: str) -> None:
        self._start(name, [sys.executable, "-m", "flask", "--app", "wsgi", "worker", "--workers", "2"], {})

    def kill(self, name: str) -> None:
        os.killpg(self.procs[name].pid, signal.SIGKILL)
        self.procs[name].wait(timeout=10)

    def alive(self, name: str) -> bool:
        return self.procs[name].poll() is None

    def tail(self) -> str:
        return "\n".join(f"--- {n}\n{p.read_text(errors='replace')[-2500:]}" for n, p in self.logs.items())

    def stop_all(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in self.procs.values():
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)


def wait_until(what: str, check: Callable[[], Any], timeout: float, diagnostics: Callable[[], str]) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        try:
            result = check()
        except requests.RequestException:
            result = None
        if result:
            return result
        assert time.monotonic() < deadline, f"{what} did not happen in {timeout} s\n{diagnostics()}"
        time.sleep(0.25)


# ----- a person at a browser -----


class _Inputs(HTMLParser):
    def __init__(self, form_action: str | None) -> None:
        super().__init__()
        self.action = form_action
        self.inside = form_action is None
        self.values: dict[str, str] = {}

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "form" and self.action is not None:
            # A form without an action posts to its own page: the caller asks for such forms on their page.
            self.inside = a.get("action") is None or str(a["action"]).split("?")[0].endswith(self.action)
        if self.inside and tag == "input" and a.get("name") and a.get("type") in ("hidden", None, "text"):
            self.values.setdefault(str(a["name"]), a.get("value") or "")

    def handle_endtag(self, tag: str) -> None:
        if tag == "form" and self.action is not None:
            self.inside = False


def form_fields(page: str, action: str | None = None) -> dict[str, str]:
    parser = _Inputs(action)
    parser.feed(page)
    return parser.values


@dataclass
class Person:
    """A signed-in browser that goes to whichever server is alive (the proxy's job in production)."""

    servers: list[str]
    session: requests.Session = field(default_factory=requests.Session)

    def sign_in(self, phone: str, log: Path) -> Person:
        sign_in(self.servers[0], phone, log, self.session)
        return self

    def url(self, turn: int) -> str:
        return self.servers[turn % len(self.servers)]

    def get(self, base: str, path: str, **kw: Any) -> requests.Response:
        return self.session.get(base + path, timeout=30, allow_redirects=False, **kw)

    def submit(self, base: str, page_path: str, post_path: str, data: dict[str, Any], **kw: Any) -> requests.Response:
        page = self.get(base, page_path)
        assert page.status_code == 200, (page_path, page.status_code, page.text[:300])
        fields = {**form_fields(page.text, post_path.split("?")[0]), **data}
        return self.session.post(base + post_path, data=fields, timeout=60, allow_redirects=False, **kw)


@dataclass
class Load:
    """What the load did, for the checks afterwards; and the 5xx answers it met (there must be none)."""

    servers: list[str]
    errors: list[str] = field(default_factory=list)
    paid: list[str] = field(default_factory=list)  # sandbox payment ids paid by card
    invoices: list[tuple[int, str]] = field(default_factory=list)  # (invoice id, server that issued it)
    cross_downloads: int = 0
    runs: list[int] = field(default_factory=list)
    sent_by_bank: int = 0  # kopecks the uploaded statement brought
    added: dict[str, str] = field(default_factory=dict)  # name → e-mail of people the owner added
    lock: threading.Lock = field(default_factory=threading.Lock)

    def live(self) -> list[str]:
        return list(self.servers)

    def note(self, resp: requests.Response, what: str) -> None:
        if resp.status_code >= 500:
            with self.lock:
                self.errors.append(f"{what}: {resp.status_code} {resp.url}")


def _run(load: Load, stop: threading.Event, fn: Callable[[int], None]) -> None:
    turn = 0
    while not stop.is_set():
        turn += 1
        try:
            fn(turn)
        except requests.ConnectionError:
            continue  # the server died under this request: the next turn goes to a live one
        except Exception as exc:  # noqa: BLE001 - a thread must not die silently: every surprise fails the test
            with load.lock:
                load.errors.append(f"{type(exc).__name__}: {exc}"[:500])


def card_payments(load: Load, person: Person, webhook_body: Callable[[str], bytes]) -> Callable[[int], None]:
    def turn(n: int) -> None:
        base = person.url(n) if len(load.servers) > 1 else load.servers[0]
        person.servers = load.live()
        resp = person.submit(
            base,
            "/checkout?plan=users-12&months=6",
            "/checkout",
            {"payer_type": "card", "accept_license": "y"},
        )
        load.note(resp, "checkout by card")
        assert resp.status_code == 302, ("checkout by card", resp.status_code, resp.text[:300])
        pay_url = resp.headers["Location"]
        payment_id = pay_url.rstrip("/").rsplit("/", 1)[-1]
        page = person.session.get(pay_url, timeout=30)
        fields = form_fields(page.text)
        fields.update(number="4111 1111 1111 1111", expiry="12/35", cvc="123", action="card")
        resp = person.session.post(pay_url, data=fields, timeout=60, allow_redirects=False)
        load.note(resp, "sandbox pay")
        why = re.findall(r"<(?:p|h1|li)[^>]*>\s*([^<]{3,})", resp.text)
        assert resp.status_code == 302, ("sandbox pay", resp.status_code, why, sorted(fields))
        with load.lock:
            load.paid.append(payment_id)
        # The provider repeats its notification, to every server behind the proxy, twice.
        body = webhook_body(payment_id)
        for server in load.live():
            for _ in range(2):
                answer = requests.post(
                    server + WEBHOOK_PATH,
                    data=body,
                    headers={"Content-Type": "application/json", SIGNATURE_HEADER: sign(WEBHOOK_SECRET, body)},
                    timeout=30,
                )
                load.note(answer, "duplicate notification")
                assert answer.status_code == 200, ("notification", answer.status_code, answer.text[:300])
        back = person.session.get(resp.headers["Location"], timeout=30, allow_redirects=False)  # the return page
        load.note(back, "return page")

    return turn


def invoices(load: Load, person: Person, statement_upload: Callable[[], None]) -> Callable[[int], None]:
    def turn(n: int) -> None:
        servers = load.live()
        base = servers[n % len(servers)]
        resp = person.submit(
            # The plan the owner renews by card: an upgrade would be withdrawn by each card payment (as it should).
            base,
            "/checkout?plan=users-12&months=12",
            "/checkout",
            {"payer_type": "invoice", "accept_license": "y"},
        )
        load.note(resp, "checkout by invoice")
        assert resp.status_code == 302, ("checkout by invoice", resp.status_code, resp.text[:300])
        invoice_id = int(re.search(r"/documents/invoices/(\d+)", resp.headers["Location"]).group(1))  # type: ignore[union-attr]
        with load.lock:
            load.invoices.append((invoice_id, base))
        other = [s for s in load.live() if s != base]
        if other:
            pdf = person.get(other[0], f"/documents/invoices/{invoice_id}/pdf")
            load.note(pdf, "invoice from the other server")
            assert pdf.status_code == 200 and pdf.content.startswith(b"%PDF"), ("cross download", pdf.status_code)
            with load.lock:
                load.cross_downloads += 1
        if n == 3:
            statement_upload()

    return turn


# ----- the test -----


def test_two_servers_and_two_workers_lose_nothing_when_one_of_each_is_killed(
    app: Any,
    db: Any,
    make_account: Any,
    app_config: dict[str, Any],
    shared_redis: tuple[str, str],
    crm: tuple[str, Emulator],
    tmp_path: Path,
) -> None:
    crm_url, emulator = crm
    # --- the world: two companies (one connected to the CRM), staff ---
    company_a = make_account(name="ООО «Ромашка»", owner_phone=OWNER_A, accountant_phone=ACCOUNTANT_A)
    give_requisites(db, company_a)
    company_b = make_account(name="ИП Соколов", owner_phone=OWNER_B)
    give_requisites(db, company_b, IP)
    db.add(User(phone=STAFF, name="Служба поддержки", is_staff=True))
    db.commit()
    boris = emulator.add_user("Борис Кузнецов", "boris@sokolov.example", phone="+79161110000")
    settings = CrmSettings.from_config(app.config)
    info = emulator.account()
    connect_account(
        db,
        account_id=company_b.id,
        actor=None,
        backend="emulator",
        base_url=crm_url,
        subdomain=info["subdomain"],
        info=CrmAccountInfo(info["id"], info["name"], info["subdomain"]),
        tokens=emulator.issue_tokens(),
        cipher=settings.cipher,
        now=utcnow(),
    )
    db.commit()
    connection = db.scalars(sa.select(CrmConnection).where(CrmConnection.account_id == company_b.id)).one()
    with app.app_context():
        crm_client = client_factory(settings, app.extensions["portal.db"].sessionmaker)(connection)
        assert sync_account(db, company_b.id, crm_client, utcnow()).counts["created"] == 1  # Boris
    boris_user = db.scalars(sa.select(User).where(User.phone == "+79161110000")).one()
    emulator.clear_requests()

    # --- two servers, two workers ---
    port_a, port_b = free_port(), free_port()
    url_a, url_b = f"http://127.0.0.1:{port_a}", f"http://127.0.0.1:{port_b}"
    queue_url, limits_url = shared_redis
    env = {
        "DATABASE_URL": app_config["DATABASE_URL"],
        "SECRET_KEY": SECRET,
        "BASE_URL": url_b,  # the provider's pages and notifications: the server that stays
        "TASK_QUEUE_URL": queue_url,
        "RATELIMIT_STORAGE_URI": limits_url,
        "SANDBOX_WEBHOOK_SECRET": WEBHOOK_SECRET,
        "CRM_BACKEND": "emulator",
        "CRM_EMULATOR_URL": crm_url,
        "CRM_OUTBOX_DELIVERY": "task",
        "EDO_BACKEND": "off",
        "SMS_SEND_LIMIT_PER_IP": "1000 per hour",
        "CHECKOUT_LIMIT_PER_ACCOUNT": "1000 per hour",
        "CHECKOUT_LIMIT_PER_IP": "1000 per hour",
        "MAX_OPEN_INVOICES": "1000",
        # Lost work is taken over within seconds rather than minutes, so the test can wait for it.
        "TASK_PERIODIC_SECONDS": "3",
        "TASK_LOST_AFTER_SECONDS": "10",
        "TASK_SILENT_AFTER_SECONDS": "10",
        "CRM_OUTBOX_LEASE_SECONDS": "10",
        **{k: v for k, v in app_config.items() if k.startswith(("S3_", "DOCUMENT_STORE_URL"))},
    }
    procs = Processes(tmp_path, env)
    try:
        procs.server("server-a", port_a)
        procs.server("server-b", port_b)
        procs.worker("worker-1")
        procs.worker("worker-2")
        for url in (url_a, url_b):
            wait_until(f"{url} answers", lambda u=url: requests.get(u + "/", timeout=5).status_code, 120, procs.tail)
        owner_a = Person([url_a, url_b]).sign_in(OWNER_A, procs.logs["server-a"])
        owner_b = Person([url_b, url_a]).sign_in(OWNER_B, procs.logs["server-b"])
        # Each thread is a browser of its own: two threads on one session would overwrite each other's cookie.
        owner_b_laptop = Person([url_b, url_a]).sign_in(OWNER_B, procs.logs["server-b"])
        accountant_a = Person([url_b, url_a]).sign_in(ACCOUNTANT_A, procs.logs["server-b"])
        staff = Person([url_a, url_b]).sign_in(STAFF, procs.logs["server-a"])

        load = Load([url_a, url_b])
        provider = get_provider(app, "sandbox")

        def webhook_body(payment_id: str) -> bytes:
            with app.extensions["portal.db"].session() as s:
                return provider.notification_body(s.get(SandboxPayment, payment_id))

        def statement_upload() -> None:
            """Staff upload a bank statement paying the first two invoices (one in full, one in part)."""
            db.expire_all()
            first, second = (db.get(Invoice, i) for i, _ in load.invoices[:2])
            data = statement(
                payment("501", first.amount, f"Оплата по счёту № {first.number}"),
                payment("502", second.amount // 2, f"Оплата по счёту № {second.number}, часть"),
            )
            base = load.live()[-1]
            resp = staff.submit(
                base,
                "/support/statements",
                "/support/statements",
                {},
                files={"statement": ("выписка.txt", io.BytesIO(data), "text/plain")},
            )
            load.note(resp, "statement upload")
            why = re.findall(r'class="[^"]*(?:error|problem)[^"]*"[^>]*>([^<]+)', resp.text)
            assert resp.status_code == 302, ("statement upload", resp.status_code, why)
            with load.lock:
                load.runs.append(int(re.search(r"run=(\d+)", resp.headers["Location"]).group(1)))  # type: ignore[union-attr]
                load.sent_by_bank = first.amount + second.amount // 2

        def team() -> None:
            """While the CRM is down the owner adds three people and deactivates Boris; then it comes back and two
            more are added. The CRM must end with each change once."""
            try:
                emulator.down = True
                base = url_b  # the server that stays: the owner is not interrupted
                for i in range(5):
                    if i == 3:
                        emulator.down = False
                    name, email = f"Новый Сотрудник {i}", f"new{i}@sokolov.example"
                    resp = owner_b_laptop.submit(
                        base,
                        "/team",
                        "/team/users",
                        {"phone": f"+7916222000{i}", "name": name, "email": email, "role": "member", "confirmed": "1"},
                    )
                    load.note(resp, "team add")
                    assert resp.status_code == 302, ("team add", resp.status_code, resp.text[:300])
                    load.added[name] = email
                    if i == 1:
                        path = f"/team/users/{boris_user.id}/deactivate"
                        resp = owner_b_laptop.submit(base, "/team", path, {"confirmed": "1"})
                        load.note(resp, "team deactivate")
                        assert resp.status_code == 302, ("deactivate", resp.status_code, resp.text[:300])
            except (AssertionError, requests.RequestException) as exc:
                load.errors.append(f"team: {exc}"[:500])
            finally:
                emulator.down = False

        stop = threading.Event()
        threads = [
            threading.Thread(target=_run, args=(load, stop, card_payments(load, owner_a, webhook_body))),
            threading.Thread(target=_run, args=(load, stop, card_payments(load, owner_b, webhook_body))),
            threading.Thread(target=_run, args=(load, stop, invoices(load, accountant_a, statement_upload))),
            threading.Thread(target=team),
        ]
        started = time.monotonic()
        for t in threads:
            t.start()
        # The middle of the load: one server and one worker die without a chance to finish anything.
        wait_until("the load's middle", lambda: time.monotonic() - started >= KILL_AFTER, KILL_AFTER + 5, procs.tail)
        load.servers.remove(url_a)
        procs.kill("server-a")
        procs.kill("worker-1")
        wait_until("the load's end", lambda: time.monotonic() - started >= LOAD_SECONDS, LOAD_SECONDS, procs.tail)
        stop.set()
        for t in threads:
            t.join(timeout=90)
        assert load.errors == [], "\n".join(load.errors) + procs.tail()
        assert procs.alive("server-b") and procs.alive("worker-2"), procs.tail()
        assert len(load.paid) >= 4 and len(load.invoices) >= 3 and load.cross_downloads >= 1, load
        assert load.runs and len(load.added) == 5, load

        # --- the survivors finish everything (polled, with a deadline) ---
        session = app.extensions["portal.db"].sessionmaker

        def settled() -> bool:
            with session() as s:
                runs_done = all(s.get(TaskRun, r).status == "done" for r in load.runs)
                outbox = s.scalars(sa.select(CrmOutbox.status).where(CrmOutbox.account_id == company_b.id)).all()
                receipts = s.scalar(
                    sa.select(sa.func.count()).select_from(Receipt).where(Receipt.payment_id.is_not(None))
                )
                pending_upds = s.scalar(sa.select(sa.func.count()).select_from(Upd).where(Upd.pdf_file_id.is_(None)))
                return runs_done and set(outbox) == {"done"} and receipts == len(load.paid) and pending_upds == 0

        wait_until("the survivors settle everything", settled, SETTLE_SECONDS, procs.tail)
        # A new server replaces the killed one, with an empty instance folder of its own.
        port_c = free_port()
        url_c = procs.server("server-c", port_c)
        wait_until(f"{url_c} answers", lambda: requests.get(url_c + "/", timeout=5).status_code, 120, procs.tail)

        # --- every payment settled once ---
        db.expire_all()
        paid = db.scalars(sa.select(SandboxPayment).where(SandboxPayment.id.in_(load.paid))).all()
        assert {p.status for p in paid} == {"succeeded"}
        card_receipts = Counter(
            r.source_key for r in db.scalars(sa.select(Receipt).where(Receipt.payment_id.is_not(None)))
        )
        assert len(card_receipts) == len(load.paid) and set(card_receipts.values()) == {1}
        assert all(any(pid in key for key in card_receipts) for pid in load.paid)
        check_invariants(db, sum(p.amount for p in paid) + load.sent_by_bank)

        # --- invoice and УПД numbers without gaps ---
        for model in (Invoice, Upd):
            numbers = sorted(db.scalars(sa.select(model.number)))
            serials = sorted(int(n.rsplit("-", 1)[-1]) for n in numbers)
            assert serials == list(range(1, len(serials) + 1)), (model.__name__, numbers)
        assert db.scalar(sa.select(sa.func.count()).select_from(Invoice)) >= len(load.invoices)

        # --- every CRM change delivered once ---
        creates = [r for r in emulator.requests if r.method == "POST" and r.path == "/api/v4/users" and r.status < 300]
        assert Counter(u["name"] for r in creates for u in r.body) == Counter(list(load.added))
        offs = [r for r in emulator.requests if r.path == "/api/v4/users/deactivate" and r.status < 300]
        assert len(offs) == 1 and not emulator.user(boris.id).is_active
        in_crm = Counter(u.name for u in emulator.users())
        assert all(in_crm[name] == 1 for name in load.added)

        # --- every document from both live servers, its SHA-256 intact ---
        documents: list[tuple[str, int, Account]] = []
        for inv in db.scalars(sa.select(Invoice)):
            documents.append((f"/documents/invoices/{inv.id}/pdf", inv.pdf_file_id, inv.account_id))
        for upd in db.scalars(sa.select(Upd)):
            documents.append((f"/documents/upd/{upd.id}/pdf", upd.pdf_file_id, upd.account_id))
            documents.append((f"/documents/upd/{upd.id}/xml", upd.xml_file_id, upd.account_id))
        assert documents and all(file_id for _, file_id, _ in documents), documents
        owners = {company_a.id: accountant_a, company_b.id: owner_b}
        for path, file_id, account_id in documents:
            stored = db.get(StoredFile, file_id)
            for server in (url_b, url_c):
                got = owners[account_id].get(server, path)
                assert got.status_code == 200, (server, path, got.status_code)
                assert hashlib.sha256(got.content).hexdigest() == stored.sha256, (server, path)
    finally:
        procs.stop_all()
