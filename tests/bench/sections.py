"""The benchmark sections; each prints a Markdown table with its baseline and the ratio."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from tests.bench.http import ROOT, gunicorn, load, sign_in


class Skip(Exception):
    pass


def table(headers: list[str], rows: list[list[str]]) -> None:
    print("| " + " | ".join(headers) + " |")
    print("|" + "---|" * len(headers))
    for r in rows:
        print("| " + " | ".join(r) + " |")


def _flask(env: dict[str, str], *args: str) -> None:
    subprocess.run(
        [str(Path(sys.executable).parent / "flask"), "--app", "wsgi", *args],
        cwd=ROOT,
        env={**os.environ, **env},
        check=True,
        capture_output=True,
    )


def pages(tmp: Path) -> None:
    """Dashboard of the over-limit demo company and /plans vs a bare Flask page, gunicorn with 2 workers each."""
    env = {
        "DATABASE_URL": f"sqlite:///{tmp / 'bench.db'}",
        "SECRET_KEY": "bench",
        "SMS_SEND_LIMIT_PER_PHONE": "1000 per minute",
    }
    _flask(env, "db", "upgrade")
    _flask(env, "seed-demo")
    rows = []
    with gunicorn("tests.bench.bare_app:app", env, tmp / "bare.log") as url:
        load("warm-up", url + "/", seconds=1)
        base = load("bare Flask page", url + "/")
    with gunicorn("wsgi:app", env, tmp / "portal.log") as url:
        cookies = sign_in(url, "+79990000001", tmp / "portal.log")
        load("warm-up", url + "/", cookies=cookies, seconds=1)
        dash = load("dashboard (over-limit company, owner)", url + "/", cookies=cookies)
        plans = load("/plans (owner)", url + "/plans", cookies=cookies)
        anon = load("/plans (visitor)", url + "/plans")
    for r in (base, dash, plans, anon):
        rows.append(
            [
                r.name,
                f"{r.rps:.0f}",
                f"{r.p50_ms:.1f}",
                f"{r.p95_ms:.1f}",
                str(r.errors),
                f"{base.rps / r.rps:.1f}×" if r is not base else "1.0×",
            ]
        )
    table(["page", "req/s", "p50 ms", "p95 ms", "non-200", "slower than bare"], rows)


def _timed(fn: Callable[[], object], repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


# --- in-process sections: one app on a database of the bench's own --------------------------------------------------


class QueryCounter:
    """Counts the SQL statements an engine executes while switched on."""

    def __init__(self, engine: object) -> None:
        import sqlalchemy as sa

        self.count = 0
        self.on = False
        sa.event.listen(engine, "before_cursor_execute", self._seen)

    def _seen(self, *args: object) -> None:
        if self.on:
            self.count += 1

    def __enter__(self) -> QueryCounter:
        self.count, self.on = 0, True
        return self

    def __exit__(self, *exc: object) -> None:
        self.on = False


def _app(tmp: Path, name: str, **config: object):  # type: ignore[no-untyped-def]
    """The portal on a fresh schema: SQLite in `tmp`, or BENCH_DATABASE_URL (PostgreSQL) if set."""
    from portal import create_app
    from portal.db import Base
    from portal.models import load_all

    url = os.environ.get("BENCH_DATABASE_URL") or f"sqlite:///{tmp / (name + '.db')}"
    app = create_app(
        {
            "INSTANCE_PATH": str(tmp / f"{name}-instance"),
            "SECRET_KEY": "bench",
            "DATABASE_URL": url,
            "DOCUMENT_STORE_PATH": str(tmp / f"{name}-documents"),
            "CRM_OUTBOX_DELIVERY": "off",
            "CRM_EMULATOR_URL": "http://127.0.0.1:9",
            "TESTING": True,
            **config,
        }
    )
    load_all()
    engine = app.extensions["portal.db"].engine
    Base.metadata.drop_all(engine)
    Base.metadata.create_all(engine)
    return app


def _company(db, name: str, requisites: bool = True):  # type: ignore[no-untyped-def]
    from portal.accounts.models import Account, Membership, User
    from portal.db import utcnow
    from portal.documents.service import save_requisites

    account = Account(name=name, created_at=utcnow())
    db.add(account)
    db.flush()
    owner = User(phone=f"+7916{account.id:07d}", name="Владелец")
    db.add(owner)
    db.flush()
    db.add(
        Membership(
            account_id=account.id, user_id=owner.id, role="owner", status="active", source="portal", name="Владелец"
        )
    )
    if requisites:
        save_requisites(
            db,
            actor=None,
            account_id=account.id,
            data={
                "kind": "org",
                "name": "ООО «Ромашка»",
                "inn": "7728146350",
                "kpp": "772801001",
                "ogrn": "1027739000123",
                "address": "117292, г. Москва, ул. Вавилова, д. 24, офис 12",
                "email": "buh@romashka.example.ru",
                "bank_name": "АО «Альфа-Банк», г. Москва",
                "bik": "044525593",
                "account_number": "40702810800000012345",
                "correspondent_account": "30101810200000000593",
                "edo_id": "",
            },
            now=utcnow(),
        )
    db.commit()
    return account, owner


def _invoice_order(db, account_id: int, key: str, plan: str = "users-12", months: int = 9):  # type: ignore[no-untyped-def]
    from portal.billing import service as billing
    from portal.db import utcnow

    order = billing.create_order(
        db,
        actor=None,
        account_id=account_id,
        plan_code=plan,
        months=months,
        payer_type="invoice",
        license_version="2026-01",
        idempotency_key=key,
        now=utcnow(),
    )
    db.commit()
    return order


STATIC_DOCUMENT = """<!doctype html><html lang="ru"><head><meta charset="utf-8"><style>
@page { size: A4; margin: 15mm } body { font-family: "DejaVu Sans", sans-serif; font-size: 9pt }
table { width: 100%; border-collapse: collapse } td, th { border: 1px solid #000; padding: 2pt 4pt }
h1 { font-size: 13pt }</style></head><body>
<table><tr><td>ПАО Сбербанк, г. Москва</td><td>БИК</td><td>044525225</td></tr>
<tr><td>ИНН 7712345671 КПП 771201001</td><td>Сч. №</td><td>40702810303800012345</td></tr></table>
<h1>Счёт на оплату № 2026-000001 от 25 ноября 2026 г.</h1>
<p>Поставщик: ООО «Мессенджер Плюс», ИНН 7712345671, КПП 771201001, 123112, г. Москва, Пресненская наб., д. 10</p>
<p>Покупатель: ООО «Ромашка», ИНН 7728146350, КПП 772801001, 117292, г. Москва, ул. Вавилова, д. 24</p>
<table><thead><tr><th>№</th><th>Товары (работы, услуги)</th><th>Кол-во</th><th>Ед.</th><th>Цена</th><th>Сумма</th></tr></thead>
<tbody><tr><td>1</td><td>Лицензия на использование корпоративного мессенджера, тариф «12 пользователей», 9 мес.</td>
<td>9</td><td>мес</td><td>990,00</td><td>8 910,00</td></tr></tbody></table>
<p>Итого: 8 464,50. Без налога (НДС). Всего к оплате: 8 464,50</p>
<p>Всего наименований 1, на сумму 8 464,50 руб. Восемь тысяч четыреста шестьдесят четыре рубля 50 копеек</p>
<p>Руководитель ____________ Иванов И. И.   Бухгалтер ____________ Петрова А. С.</p></body></html>"""


def documents(tmp: Path) -> None:
    """First render of an invoice and of a УПД vs WeasyPrint on comparable static HTML; a stored document's download."""
    import statistics
    from datetime import date

    import sqlalchemy as sa
    from weasyprint import HTML

    from portal.db import utcnow
    from portal.documents.invoices import issue_invoice
    from portal.documents.models import StoredFile, Upd
    from portal.documents.service import read_file
    from portal.documents.store import get_store
    from portal.payments.bank import mark_invoice_paid

    app = _app(tmp, "documents")
    maker = app.extensions["portal.db"].sessionmaker

    def static_render() -> bytes:
        return HTML(string=STATIC_DOCUMENT).write_pdf()

    static_render()  # WeasyPrint's own one-time start-up (fonts, caches) is not what is measured
    static = _timed(static_render, 3)
    invoice_times, upd_times = [], []
    with app.app_context(), maker() as db:
        account, owner = _company(db, "ООО «Ромашка»")
        for i in range(3):
            order = _invoice_order(db, account.id, f"bench-doc-{i}")
            t0 = time.perf_counter()
            invoice = issue_invoice(db, order, actor=None, now=utcnow(), config=app.config)
            db.commit()
            invoice_times.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            mark_invoice_paid(
                db, invoice.id, actor=None, bank_reference=f"п/п № {i + 1}", paid_on=date.today(), now=utcnow()
            )
            upd_times.append(time.perf_counter() - t0)
        upd = db.scalars(sa.select(Upd).where(Upd.status == "formed")).first()
        stored = db.get(StoredFile, upd.pdf_file_id)
        db.expunge(stored)
        invoice_id = invoice.id
        phone = owner.phone
    store = get_store(app.config)
    reads = 500
    t0 = time.perf_counter()
    for _ in range(reads):
        read_file(stored, app.config)
    file_read = (time.perf_counter() - t0) / reads

    # The same bytes through the portal: signed-in owner, access check, hash check, response.
    from tests.conftest import RecordingSms

    sms = RecordingSms()
    app.config["SMS_BACKEND_OBJECT"] = sms
    client = app.test_client()
    import re

    token = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', client.get("/login").get_data(as_text=True)).group(1)
    client.post("/login", data={"csrf_token": token, "phone": phone})
    client.post("/login/code", data={"csrf_token": token, "code": sms.last_code(phone)})
    path = f"/documents/invoices/{invoice_id}/pdf"
    first = client.get(path)
    assert first.status_code == 200 and first.data.startswith(b"%PDF"), first.status_code
    downloads = 200
    t0 = time.perf_counter()
    for _ in range(downloads):
        client.get(path).close()
    http_read = (time.perf_counter() - t0) / downloads
    del store

    inv = statistics.median(invoice_times)
    updm = statistics.median(upd_times)
    table(
        ["what", "time", "vs static HTML in WeasyPrint"],
        [
            ["WeasyPrint, comparable static HTML (best of 3)", f"{static * 1000:.0f} ms", "1.0×"],
            [
                "invoice issued: number, Jinja, QR, WeasyPrint, store (median of 3)",
                f"{inv * 1000:.0f} ms",
                f"{inv / static:.1f}×",
            ],
            ["УПД formed on payment: PDF + XML, store (median of 3)", f"{updm * 1000:.0f} ms", f"{updm / static:.1f}×"],
            ["stored document read back, SHA-256 checked", f"{file_read * 1000:.2f} ms", f"{file_read / static:.4f}×"],
            ["download over HTTP (test client, signed in)", f"{http_read * 1000:.2f} ms", f"{http_read / static:.4f}×"],
        ],
    )
    print(
        f"\nA stored document ({stored.size} bytes) is read back {inv / file_read:.0f}× faster than an invoice is issued,"
        f" and downloaded through the portal {inv / http_read:.0f}× faster."
    )


def crm(tmp: Path) -> None:
    """Reconcile 10 000 CRM users against the emulator over HTTP with 1 % of them changed."""
    import random

    import sqlalchemy as sa

    from portal.accounts.models import Membership
    from portal.db import utcnow
    from portal.seats.crm.base import CrmAccountInfo
    from portal.seats.crm.emulator import running_emulator
    from portal.seats.crm.factory import CrmSettings, build_client
    from portal.seats.crm.models import CrmConnection
    from portal.seats.crm.service import connect_account
    from portal.seats.crm.sync import sync_account

    users = int(os.environ.get("BENCH_CRM_USERS", "10000"))
    app = _app(tmp, "crm")
    maker = app.extensions["portal.db"].sessionmaker
    counter = QueryCounter(app.extensions["portal.db"].engine)
    rows = []
    with running_emulator() as (url, emulator), app.app_context():
        people = emulator.seed(users, seed=7)
        with maker() as db:
            account, _owner = _company(db, "ООО «Большая»", requisites=False)
            settings = CrmSettings.from_config(app.config)
            info = emulator.account()
            connect_account(
                db,
                account_id=account.id,
                actor=None,
                backend="emulator",
                base_url=url,
                subdomain=info["subdomain"],
                info=CrmAccountInfo(info["id"], info["name"], info["subdomain"]),
                tokens=emulator.issue_tokens(),
                cipher=settings.cipher,
                now=utcnow(),
            )
            db.commit()
            account_id = account.id

        def run(label: str, *, paced: bool) -> None:
            with maker() as db:
                connection = db.scalars(sa.select(CrmConnection).where(CrmConnection.account_id == account_id)).one()
                options = {} if paced else {"sleep": lambda s: None}
                client = build_client(settings, connection, maker, **options)
                emulator.clear_requests()
                with counter:
                    t0 = time.perf_counter()
                    result = sync_account(db, account_id, client, utcnow())
                    elapsed = time.perf_counter() - t0
                assert result.ok, result.error
                api = [r for r in emulator.requests if r.path.startswith("/api/")]
                rows.append(
                    [
                        label,
                        f"{result.changes}",
                        f"{elapsed:.2f} s",
                        f"{elapsed / users * 1e6:.0f} µs",
                        str(counter.count),
                        str(len(api)),
                    ]
                )

        run(f"first import of {users} users (7 req/s pacing off)", paced=False)
        rng = random.Random(1)
        changed = rng.sample([p for p in people if not p.is_admin], users // 100)
        groups = [g.id for g in emulator.groups()]
        for i, person in enumerate(changed):
            if i % 3 == 0:
                emulator.set_active(person.id, False)
            elif i % 3 == 1:
                emulator.move_user(person.id, rng.choice([g for g in groups if g != person.group_id]))
            else:
                emulator.add_user(f"Новый Сотрудник {i}", f"new{i}@bench.example", group_id=rng.choice(groups))
        run(f"1 % changed ({len(changed)}), pacing off: the portal's own cost", paced=False)
        for i, person in enumerate(changed[:30]):
            emulator.move_user(person.id, groups[i % len(groups)])
        run("again with 0.3 % changed, amoCRM's 7 req/s pacing on", paced=True)
        with maker() as db:
            active = db.scalar(
                sa.select(sa.func.count())
                .select_from(Membership)
                .where(Membership.account_id == account_id, Membership.status == "active")
            )
    table(["run", "changes", "time", "per CRM user", "SQL queries", "CRM API requests"], rows)
    print(f"\nActive users in the directory afterwards: {active}.")


def statement(tmp: Path) -> None:
    """Import a bank statement of 10 000 payment orders (100 paying open invoices), then the same file again."""
    from datetime import date

    from portal.db import utcnow
    from portal.documents import render
    from portal.documents.invoices import issue_invoice
    from portal.payments.bank import import_statement
    from portal.payments.statement import build_statement, parse_statement

    size = int(os.environ.get("BENCH_STATEMENT_ORDERS", "10000"))
    paying = 100
    app = _app(tmp, "statement")
    maker = app.extensions["portal.db"].sessionmaker
    counter = QueryCounter(app.extensions["portal.db"].engine)
    # Matching and recording are measured here, not PDF layout (see the documents section).
    render.render_invoice_pdf = lambda ctx: f"%PDF-1.7 invoice {ctx['number']}".encode()
    render.render_upd_pdf = lambda ctx: f"%PDF-1.7 upd {ctx['number']}".encode()
    seller = app.config["SELLER_ACCOUNT"]
    today = date.today()
    docs = []
    with app.app_context(), maker() as db:
        account, _owner = _company(db, "ООО «Ромашка»")
        for i in range(paying):
            order = _invoice_order(db, account.id, f"bench-st-{i}")
            invoice = issue_invoice(db, order, actor=None, now=utcnow(), config=app.config)
            db.commit()
            docs.append((invoice.number, invoice.amount))

    def doc(i: int, amount: int, purpose: str) -> dict[str, object]:
        return {
            "Номер": str(10000 + i),
            "Дата": today,
            "Сумма": amount,
            "ПлательщикСчет": "40702810800000012345",
            "ДатаСписано": today,
            "Плательщик": f'ИНН 7728146350 ООО "Плательщик {i}"',
            "ПлательщикИНН": "7728146350",
            "Плательщик1": f'ООО "Плательщик {i}"',
            "ПолучательСчет": seller,
            "ДатаПоступило": today,
            "Получатель": 'ООО "Мессенджер Плюс"',
            "ПолучательИНН": "7712345671",
            "ВидОплаты": "01",
            "Очередность": 5,
            "НазначениеПлатежа": purpose,
        }

    documents_ = [
        doc(i, amount, f"Оплата по счёту № {number}. Без налога (НДС)") for i, (number, amount) in enumerate(docs)
    ]
    documents_ += [doc(i, 1000 + i, f"Оплата по договору {i}, без НДС") for i in range(paying, size)]
    header = {
        "Отправитель": "Бухгалтерия",
        "Получатель": "",
        "ДатаСоздания": today,
        "ДатаНачала": today,
        "ДатаКонца": today,
        "РасчСчет": seller,
    }
    data = build_statement(header, documents_, "Windows")
    parse = _timed(lambda: parse_statement(data), 3)
    rows = [
        [
            f"parse {size} orders ({len(data) / 1e6:.1f} MB, cp1251)",
            f"{parse:.2f} s",
            f"{parse / size * 1e6:.0f} µs",
            "0",
            "",
        ]
    ]
    for label in (
        f"import {size} orders: {paying} pay invoices (+ УПД), the rest listed for support",
        "the same file again: nothing changes",
    ):
        with app.app_context(), maker() as db, counter:
            t0 = time.perf_counter()
            result = import_statement(db, data, file_name="bench.txt", actor=None, now=utcnow(), config=app.config)
            elapsed = time.perf_counter() - t0
        rows.append([label, f"{elapsed:.2f} s", f"{elapsed / size * 1e6:.0f} µs", str(counter.count), result.summary])
    table(["step", "time", "per order", "SQL queries", "result"], rows)


def tasks(tmp: Path) -> None:
    """Long work started from the web under gunicorn's defaults (sync workers, 30 s timeout) and done by a task
    queue worker (`flask worker`, SQLite queue): a CRM's first import of 10 000 users, a 10 000-order statement."""
    import re

    import requests
    import sqlalchemy as sa

    from portal.accounts.service import make_staff
    from portal.db import utcnow
    from portal.documents.invoices import issue_invoice
    from portal.payments.statement import build_statement
    from portal.seats.crm.base import CrmAccountInfo
    from portal.seats.crm.emulator import running_emulator
    from portal.seats.crm.factory import CrmSettings
    from portal.seats.crm.service import connect_account

    users = int(os.environ.get("BENCH_CRM_USERS", "10000"))
    size = int(os.environ.get("BENCH_STATEMENT_ORDERS", "10000"))
    app = _app(tmp, "tasks", MAX_OPEN_INVOICES=1000)
    # The setup's 100 invoices need no real PDF; the worker renders the УПД for real.
    from portal.documents import render

    render.render_invoice_pdf = lambda ctx: f"%PDF-1.7 invoice {ctx['number']}".encode()
    maker = app.extensions["portal.db"].sessionmaker
    seller = app.config["SELLER_ACCOUNT"]
    rows = []
    with running_emulator() as (emu_url, emulator), app.app_context():
        emulator.seed(users, seed=7)
        with maker() as db:
            account, owner = _company(db, "ООО «Большая»")
            info = emulator.account()
            connect_account(
                db,
                account_id=account.id,
                actor=None,
                backend="emulator",
                base_url=emu_url,
                subdomain=info["subdomain"],
                info=CrmAccountInfo(info["id"], info["name"], info["subdomain"]),
                tokens=emulator.issue_tokens(),
                cipher=CrmSettings.from_config(app.config).cipher,
                now=utcnow(),
            )
            docs = []
            for i in range(100):
                order = _invoice_order(db, account.id, f"bench-tasks-{i}")
                invoice = issue_invoice(db, order, actor=None, now=utcnow(), config=app.config)
                db.commit()
                docs.append((invoice.number, invoice.amount))
            make_staff(db, phone="+79990000099", name="Поддержка")
            db.commit()
            owner_phone = owner.phone
        today = utcnow().date()

        def doc(i: int, amount: int, purpose: str) -> dict[str, object]:
            return {
                "Номер": str(10000 + i),
                "Дата": today,
                "Сумма": amount,
                "ПлательщикСчет": "40702810800000012345",
                "ДатаСписано": today,
                "Плательщик": f'ИНН 7728146350 ООО "Плательщик {i}"',
                "ПлательщикИНН": "7728146350",
                "Плательщик1": f'ООО "Плательщик {i}"',
                "ПолучательСчет": seller,
                "ДатаПоступило": today,
                "Получатель": 'ООО "Мессенджер Плюс"',
                "ПолучательИНН": "7712345671",
                "ВидОплаты": "01",
                "Очередность": 5,
                "НазначениеПлатежа": purpose,
            }

        documents_ = [doc(i, amount, f"Оплата по счёту № {n}. Без НДС") for i, (n, amount) in enumerate(docs)]
        documents_ += [doc(i, 1000 + i, f"Оплата по договору {i}, без НДС") for i in range(len(docs), size)]
        header = {
            "Отправитель": "Бухгалтерия",
            "Получатель": "",
            "ДатаСоздания": today,
            "ДатаНачала": today,
            "ДатаКонца": today,
        }
        data = build_statement({**header, "РасчСчет": seller}, documents_, "Windows")
        env = {
            "INSTANCE_PATH": str(tmp / "tasks-instance"),
            "SECRET_KEY": "bench",
            "DATABASE_URL": app.config["DATABASE_URL"],
            "DOCUMENT_STORE_PATH": app.config["DOCUMENT_STORE_PATH"],
            "TASK_QUEUE_URL": f"sqlite:///{tmp / 'tasks-queue.db'}",
            "CRM_BACKEND": "emulator",
            "CRM_EMULATOR_URL": emu_url,
            "CRM_OUTBOX_DELIVERY": "off",
            "MAX_OPEN_INVOICES": "1000",
        }
        worker_log = open(tmp / "tasks-worker.log", "w")  # noqa: SIM115 - kept open for the worker's life
        worker = subprocess.Popen(
            [str(Path(sys.executable).parent / "flask"), "--app", "wsgi", "worker", "--no-periodic"],
            cwd=ROOT,
            env={**os.environ, **env},
            stdout=worker_log,
            stderr=subprocess.STDOUT,
        )
        try:
            with gunicorn("wsgi:app", env, tmp / "tasks-web.log") as url:

                def started(phone: str, page_path: str, path: str, **kwargs: object) -> tuple[float, str]:
                    cookies = sign_in(url, phone, tmp / "tasks-web.log")
                    s = requests.Session()
                    for name, value in cookies.items():  # as the server set them, so its updates replace them
                        s.cookies.set(name, value, domain="127.0.0.1", path="/")
                    page = s.get(url + page_path).text
                    token = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', page).group(1)  # type: ignore[union-attr]
                    t0 = time.perf_counter()
                    r = s.post(url + path, data={"csrf_token": token}, allow_redirects=False, timeout=60, **kwargs)  # type: ignore[arg-type]
                    answered = time.perf_counter() - t0
                    assert r.status_code == 302, (r.status_code, r.text[:300])
                    return answered, s

                def finished(s: requests.Session, kind: str) -> tuple[float, dict[str, object]]:
                    with maker() as db:
                        run_id = db.scalar(sa.text("SELECT max(id) FROM task_runs WHERE kind = :k"), {"k": kind})
                    t0 = time.perf_counter()
                    while not (state := s.get(f"{url}/tasks/{run_id}/status").json())["finished"]:
                        time.sleep(0.5)
                    return time.perf_counter() - t0, state

                answered, s = started(owner_phone, "/crm", "/crm/sync")
                waited, state = finished(s, "crm_sync")
                rows.append(
                    [
                        f"CRM first import of {users} users (7 req/s pacing on)",
                        f"{answered * 1000:.0f} ms",
                        f"{answered + waited:.1f} s",
                        f"{state['status']}: {state['message'] or state['error']}"[:120],
                    ]
                )
                answered, s = started(
                    "+79990000099",
                    "/support/statements",
                    "/support/statements",
                    files={"statement": ("bench.txt", data, "text/plain")},
                )
                waited, state = finished(s, "statement_import")
                rows.append(
                    [
                        f"web statement import of {size} orders ({len(data) / 1e6:.1f} MB; 100 pay invoices, УПД rendered)",
                        f"{answered * 1000:.0f} ms",
                        f"{answered + waited:.1f} s",
                        f"{state['status']}: {state['message'] or state['error']}"[:160],
                    ]
                )
        finally:
            worker.terminate()
            worker.wait(timeout=30)
            worker_log.close()
    table(["work", "request answered in", "task done after", "outcome"], rows)


ALL: list[tuple[str, Callable[[Path], None]]] = [
    ("pages", pages),
    ("documents", documents),
    ("crm", crm),
    ("statement", statement),
    ("tasks", tasks),
]
