"""The benchmark sections; each prints a Markdown table with its baseline and the ratio."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import requests

from tests.bench.http import ROOT, gunicorn, load, sign_in


class Skip(Exception):
    pass


# The JSON summary (`BENCH_JSON`): each section adds its figures here.
SUMMARY: dict[str, object] = {}


def database_url(tmp: Path, name: str) -> str:
    return os.environ.get("BENCH_DATABASE_URL") or f"sqlite:///{tmp / (name + '.db')}"


def database_name() -> str:
    """The database the bench runs on, without credentials: "sqlite" or "postgresql://host:port/name"."""
    url = os.environ.get("BENCH_DATABASE_URL")
    if not url:
        return "sqlite"
    import sqlalchemy as sa

    parsed = sa.engine.make_url(url)
    return f"{parsed.get_backend_name()}://{parsed.host}:{parsed.port or 5432}/{parsed.database}"


def _fresh_schema(url: str) -> None:
    """An empty database for `flask db upgrade`: the bench's own PostgreSQL database is emptied first."""
    import sqlalchemy as sa

    if not url.startswith("postgresql"):
        return
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.execute(sa.text("DROP SCHEMA public CASCADE"))
        conn.execute(sa.text("CREATE SCHEMA public"))
    engine.dispose()


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
        "DATABASE_URL": database_url(tmp, "bench"),
        "SECRET_KEY": "bench",
        "SMS_SEND_LIMIT_PER_PHONE": "1000 per minute",
    }
    _fresh_schema(env["DATABASE_URL"])
    _flask(env, "db", "upgrade")
    _flask(env, "seed-demo")
    rows = []
    # Every page is warmed for a second before its 5 s are counted, the bare page as much as the portal's.
    with gunicorn("tests.bench.bare_app:app", env, tmp / "bare.log") as url:
        load("warm-up", url + "/", seconds=1)
        base = load("bare Flask page", url + "/")
    with gunicorn("wsgi:app", env, tmp / "portal.log") as url:
        cookies = sign_in(url, "+79990000001", tmp / "portal.log")
        load("warm-up", url + "/", cookies=cookies, seconds=1)
        dash = load("dashboard (over-limit company, owner)", url + "/", cookies=cookies)
        load("warm-up", url + "/plans", cookies=cookies, seconds=1)
        plans = load("/plans (owner)", url + "/plans", cookies=cookies)
        load("warm-up", url + "/plans", seconds=1)
        anon = load("/plans (visitor)", url + "/plans")
    SUMMARY["dashboard_vs_bare"] = round(dash.rps / base.rps, 3)
    SUMMARY["plans_owner_vs_bare"] = round(plans.rps / base.rps, 3)
    SUMMARY["plans_visitor_vs_bare"] = round(anon.rps / base.rps, 3)
    SUMMARY["bare_rps"] = round(base.rps, 1)
    for r in (base, dash, plans, anon):
        rows.append(
            [
                r.name,
                f"{r.rps:.0f}",
                f"{r.p50_ms:.1f}",
                f"{r.p95_ms:.1f}",
                str(r.errors),
                f"{r.rps / base.rps:.2f}×",
            ]
        )
    table(["page", "req/s", "p50 ms", "p95 ms", "non-200", "throughput vs bare"], rows)


def _timed(fn: Callable[[], object], repeat: int) -> float:
    """Median of `repeat` timed calls after one untimed warm-up call: the statistic of every ratio here."""
    import statistics

    fn()
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


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

    url = database_url(tmp, name)
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
    from portal.billing.orders import create_order
    from portal.db import utcnow

    order = create_order(
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


def _direct_weasyprint(html: str, template_name: str) -> Callable[[], bytes]:
    """WeasyPrint used directly on a document's own HTML, as its documentation advises for many documents: the
    stylesheets and their @font-face fonts parsed once (here, before timing) and reused; per call only the HTML is
    parsed, laid out and written. No database, Jinja or QR code: what is left of the portal's cost is its own."""
    from weasyprint import CSS, HTML
    from weasyprint.text.fonts import FontConfiguration

    from portal.documents import render

    # Stylesheets the portal passes alongside the HTML (rather than linking them from it), if it does; linked ones
    # WeasyPrint fetches and parses itself on every call.
    sheets = list(getattr(render, "stylesheet_paths", lambda name: [])(template_name))
    base_url = render.INVOICES_DIR.as_uri() + "/"
    fonts = FontConfiguration()
    css = [CSS(filename=str(path), font_config=fonts, url_fetcher=render.LocalOnlyURLFetcher()) for path in sheets]

    def run() -> bytes:
        document = HTML(string=html, base_url=base_url, url_fetcher=render.LocalOnlyURLFetcher())
        return document.write_pdf(stylesheets=css, font_config=fonts)

    return run


class _HtmlRecorder:
    """Keeps the last HTML each document template produced inside the portal's own rendering."""

    def __init__(self) -> None:
        from portal.documents import render

        self.render = render
        self.real = render.HTML
        self.last: dict[str, str] = {}
        render.HTML = self  # type: ignore[assignment]

    def __call__(self, *args: object, **kwargs: object):  # type: ignore[no-untyped-def]
        html = kwargs.get("string")
        if isinstance(html, str):
            for name in ("upd.html", "invoice.html"):
                marker = "Универсальный передаточный документ" if name == "upd.html" else "Счёт на оплату №"
                if marker in html:
                    self.last[name] = html
        return self.real(*args, **kwargs)

    def close(self) -> None:
        self.render.HTML = self.real  # type: ignore[assignment]


def documents(tmp: Path) -> None:
    """An invoice issued and a УПД formed vs WeasyPrint rendering each one's own HTML directly; each template's own
    HTML vs a simple comparable page; a stored document's download. Every figure is a median of N warm runs."""
    import gc
    import statistics
    from datetime import date

    import sqlalchemy as sa
    from weasyprint import HTML
    from weasyprint.text.fonts import FontConfiguration

    from portal.db import utcnow
    from portal.documents.invoices import issue_invoice
    from portal.documents.models import StoredFile, Upd
    from portal.documents.service import read_file
    from portal.payments.statement_lines import mark_invoice_paid

    repeat = int(os.environ.get("BENCH_DOC_REPEAT", "7"))
    app = _app(tmp, "documents")
    maker = app.extensions["portal.db"].sessionmaker
    recorder = _HtmlRecorder()

    simple_fonts = FontConfiguration()  # the same warm state as the documents' side: one font configuration

    def simple() -> bytes:
        return HTML(string=STATIC_DOCUMENT).write_pdf(font_config=simple_fonts)

    times: dict[str, list[float]] = {k: [] for k in ("simple", "invoice", "invoice_html", "upd", "upd_html")}
    # The process's CPU time as well: rendering is single-threaded CPU work, and on a shared machine the wall clock
    # also counts the time the neighbours' processes held the cores (the simple page took 25 ms on a quiet machine
    # and 100-130 ms under a load of 13), which blurs the template-against-page ratios.
    cpu: dict[str, list[float]] = {k: [] for k in times}

    def clock(key: str, fn: Callable[[], object]) -> None:
        # A full garbage collection first, outside the timing: otherwise the process's periodic full collection
        # (every few renders' worth of allocations) falls on the same turn of the interleaved order every round, and
        # one side pays for the garbage of all of them (measured: whichever call came fourth of four took 1.6× the
        # others, the same HTML rendered the same way).
        gc.collect()
        t0, c0 = time.perf_counter(), time.process_time()
        fn()
        times[key].append(time.perf_counter() - t0)
        cpu[key].append(time.process_time() - c0)

    try:
        with app.app_context(), maker() as db:
            owners = []

            def order_of_new_company(i: int):  # type: ignore[no-untyped-def]
                # A company of its own for each invoice: its payment starts the rights at once, so a УПД is formed
                # (a second order of one company would wait for the first one's period, and its УПД with it).
                account, owner = _company(db, "ООО «Ромашка»")
                owners.append(owner)
                return _invoice_order(db, account.id, f"bench-doc-{i}")

            def issue(order):  # type: ignore[no-untyped-def]
                invoice = issue_invoice(db, order, actor=None, now=utcnow(), config=app.config)
                db.commit()
                return invoice

            def pay(invoice, i: int) -> None:  # type: ignore[no-untyped-def]
                mark_invoice_paid(
                    db, invoice.id, actor=None, bank_reference=f"п/п № {i + 1}", paid_on=date.today(), now=utcnow()
                )

            # Warm-up of every side: the first document of a process, and WeasyPrint's own first page.
            simple()
            pay(issue(order_of_new_company(0)), 0)
            invoice_html = _direct_weasyprint(recorder.last["invoice.html"], "invoice.html")
            upd_html = _direct_weasyprint(recorder.last["upd.html"], "upd.html")
            invoice_html()
            upd_html()
            # Interleaved, so a burst of load from a neighbour falls on every side alike.
            for i in range(1, repeat + 1):
                clock("simple", simple)
                clock("invoice_html", invoice_html)
                issued: list = []
                order = order_of_new_company(i)
                clock("invoice", lambda order=order, issued=issued: issued.append(issue(order)))
                clock("upd_html", upd_html)
                clock("upd", lambda i=i, issued=issued: pay(issued[0], i))
                invoice = issued[0]
            upd = db.scalars(sa.select(Upd).where(Upd.status == "formed")).first()
            stored = db.get(StoredFile, upd.pdf_file_id)
            db.expunge(stored)
            invoice_id = invoice.id  # type: ignore[attr-defined]
            phone = owners[-1].phone
    finally:
        recorder.close()
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

    m = {k: statistics.median(v) for k, v in times.items()}
    c = {k: statistics.median(v) for k, v in cpu.items()}
    n = f"median of {repeat}"
    table(
        ["what", "time", "ratio", "against"],
        [
            [f"WeasyPrint, simple comparable page ({n})", f"{m['simple'] * 1000:.0f} ms", "1.00×", "itself"],
            [
                f"WeasyPrint directly on the invoice's own HTML + CSS ({n})",
                f"{m['invoice_html'] * 1000:.0f} ms",
                f"{m['invoice_html'] / m['simple']:.2f}×",
                "simple page",
            ],
            [
                f"… the same, process CPU time ({n})",
                f"{c['invoice_html'] * 1000:.0f} ms",
                f"{c['invoice_html'] / c['simple']:.2f}×",
                f"simple page's CPU time ({c['simple'] * 1000:.0f} ms)",
            ],
            [
                f"invoice issued: number, Jinja, QR, WeasyPrint, store ({n})",
                f"{m['invoice'] * 1000:.0f} ms",
                f"{m['invoice'] / m['invoice_html']:.2f}×",
                "its own HTML in WeasyPrint",
            ],
            [
                f"WeasyPrint directly on the УПД's own HTML + CSS ({n})",
                f"{m['upd_html'] * 1000:.0f} ms",
                f"{m['upd_html'] / m['simple']:.2f}×",
                "simple page",
            ],
            [
                f"… the same, process CPU time ({n})",
                f"{c['upd_html'] * 1000:.0f} ms",
                f"{c['upd_html'] / c['simple']:.2f}×",
                f"simple page's CPU time ({c['simple'] * 1000:.0f} ms)",
            ],
            [
                f"УПД formed on payment: ledger, PDF + XML, store ({n})",
                f"{m['upd'] * 1000:.0f} ms",
                f"{m['upd'] / m['upd_html']:.2f}×",
                "its own HTML in WeasyPrint",
            ],
            [
                "stored document read back, SHA-256 checked (mean of 500)",
                f"{file_read * 1000:.2f} ms",
                f"{file_read / m['simple']:.4f}×",
                "simple page",
            ],
            [
                "download over HTTP (test client, signed in, mean of 200)",
                f"{http_read * 1000:.2f} ms",
                f"{http_read / m['simple']:.4f}×",
                "simple page",
            ],
        ],
    )
    SUMMARY.update(
        {
            "invoice_vs_own_html": round(m["invoice"] / m["invoice_html"], 3),
            "invoice_html_vs_simple": round(m["invoice_html"] / m["simple"], 3),
            "upd_vs_own_html": round(m["upd"] / m["upd_html"], 3),
            "upd_html_vs_simple": round(m["upd_html"] / m["simple"], 3),
            # The template-against-page ratios in CPU time, steadier than the wall clock on a loaded machine.
            "invoice_html_vs_simple_cpu": round(c["invoice_html"] / c["simple"], 3),
            "upd_html_vs_simple_cpu": round(c["upd_html"] / c["simple"], 3),
            "simple_page_ms": round(m["simple"] * 1000, 1),
            "invoice_issue_ms": round(m["invoice"] * 1000, 1),
            "upd_formed_ms": round(m["upd"] * 1000, 1),
            "document_repeat": repeat,
        }
    )
    print(
        f"\nA stored document ({stored.size} bytes) is read back {m['invoice'] / file_read:.0f}× faster than an invoice"
        f" is issued, and downloaded through the portal {m['invoice'] / http_read:.0f}× faster."
    )


class VirtualClock:
    """A monotonic clock that only the rate limiter's sleep moves: pacing is counted, never waited or spun on."""

    def __init__(self) -> None:
        self.t = 0.0
        self.slept = 0.0

    def now(self) -> float:
        return self.t

    def sleep(self, seconds: float) -> None:
        self.t += max(seconds, 0.0)
        self.slept += max(seconds, 0.0)


class TimedSession(requests.Session):
    """A requests session that adds up the time its requests take (the round trip to the CRM and its answer)."""

    def __init__(self) -> None:
        super().__init__()
        self.waited = 0.0

    def request(self, *args: Any, **kwargs: Any) -> requests.Response:  # type: ignore[override]
        t0 = time.perf_counter()
        try:
            return super().request(*args, **kwargs)
        finally:
            self.waited += time.perf_counter() - t0


def crm(tmp: Path) -> None:
    """Reconcile 10 000 CRM users against the emulator over HTTP with 1 % of them changed."""
    import random

    import sqlalchemy as sa

    from devtools.crm_emulator import running_emulator
    from portal.accounts.models import Membership
    from portal.db import utcnow
    from portal.seats.crm.base import CrmAccountInfo
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
            # The client of an emulator connection goes wherever the settings say the emulator is.
            app.config["CRM_EMULATOR_URL"] = url
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

        own: list[float] = []  # each run's time less the time spent waiting for the emulator's HTTP answers

        def run(label: str, *, paced: bool) -> float:
            with maker() as db:
                connection = db.scalars(sa.select(CrmConnection).where(CrmConnection.account_id == account_id)).one()
                # Pacing off: the client's rate limiter waits on a virtual clock that its sleep moves forward, so
                # it neither sleeps nor spins on the real clock; what is left is the portal's (and emulator's) cost.
                virtual = VirtualClock()
                session = TimedSession()
                options = {} if paced else {"sleep": virtual.sleep, "clock": virtual.now}
                client = build_client(settings, connection, maker, session=session, **options)
                emulator.clear_requests()
                with counter:
                    t0 = time.perf_counter()
                    result = sync_account(db, account_id, client, utcnow())
                    elapsed = time.perf_counter() - t0
                assert result.ok, result.error
                own.append(elapsed - session.waited)
                api = [r for r in emulator.requests if r.path.startswith("/api/")]
                rows.append(
                    [
                        label,
                        f"{result.changes}",
                        f"{elapsed:.2f} s",
                        f"{elapsed / users * 1e6:.0f} µs",
                        f"{session.waited:.2f} s",
                        f"{own[-1] / users * 1e6:.0f} µs",
                        str(counter.count),
                        str(len(api)),
                        f"{virtual.slept:.1f} s" if not paced else "real",
                    ]
                )
                return elapsed

        first = run(f"first import of {users} users (7 req/s pacing off)", paced=False)
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
        routine = run(f"1 % changed ({len(changed)}), pacing off: the portal's own cost", paced=False)
        for i, person in enumerate(changed[:30]):
            emulator.move_user(person.id, groups[i % len(groups)])
        run("again with 0.3 % changed, amoCRM's 7 req/s pacing on", paced=True)
        with maker() as db:
            active = db.scalar(
                sa.select(sa.func.count())
                .select_from(Membership)
                .where(Membership.account_id == account_id, Membership.status == "active")
            )
    table(
        [
            "run",
            "changes",
            "time",
            "per CRM user",
            "waiting for HTTP",
            "portal's own per user",
            "SQL queries",
            "CRM API requests",
            "pacing waited",
        ],
        rows,
    )
    print(f"\nActive users in the directory afterwards: {active}.")
    SUMMARY["crm_users"] = users
    SUMMARY["crm_first_import_s"] = round(first, 2)
    # The issue's figure is the portal's own cost: the run less the time its HTTP calls waited for the emulator
    # (which runs in this process and answers 10 000 users' pages as JSON); the whole run is kept beside it.
    SUMMARY["crm_routine_us_per_user"] = round(own[1] / users * 1e6, 1)
    SUMMARY["crm_routine_total_us_per_user"] = round(routine / users * 1e6, 1)
    SUMMARY["crm_first_import_own_s"] = round(own[0], 2)


def statement(tmp: Path) -> None:
    """Import a bank statement of 10 000 payment orders (100 paying open invoices), then the same file again."""
    from datetime import date

    from portal.db import utcnow
    from portal.documents.invoices import issue_invoice
    from portal.payments.bank import import_statement
    from portal.payments.statement import build_statement, parse_statement

    size = int(os.environ.get("BENCH_STATEMENT_ORDERS", "10000"))
    paying = int(os.environ.get("BENCH_STATEMENT_PAYING", "100"))
    app = _app(tmp, "statement")
    maker = app.extensions["portal.db"].sessionmaker
    counter = QueryCounter(app.extensions["portal.db"].engine)
    # Nothing is stubbed: the invoices are issued and the УПД formed with real PDFs. The УПД rendering
    # (`documents.service.form_documents`: the queue's task, run in place by the bench's immediate queue; in the
    # import's own call on older code) is timed on its own wherever it happens, so the import's figure and the
    # rendering's are both shown and neither hides in the other.
    from portal.documents import service as documents_service
    from portal.documents import tasks as documents_tasks

    forming: list[float] = []
    real_form = documents_service.form_documents

    def timed_form(*args, **kwargs):  # type: ignore[no-untyped-def]
        t0 = time.perf_counter()
        try:
            return real_form(*args, **kwargs)
        finally:
            forming.append(time.perf_counter() - t0)

    # The queue's task imports the function by name, so its module is patched too (else the rendering, run in
    # place by the immediate queue, would hide in the import's figure).
    documents_service.form_documents = documents_tasks.form_documents = timed_form
    seller = app.config["SELLER_ACCOUNT"]
    today = date.today()
    docs = []
    # Setup, not measured: the invoices' own PDFs are not what this section times, so their rendering is stood in
    # for while they are issued (the УПД below are rendered for real).
    from portal.documents import render

    real_invoice_pdf = render.render_invoice_pdf
    render.render_invoice_pdf = lambda ctx: f"%PDF-invoice {ctx['number']}".encode()
    with app.app_context(), maker() as db:
        for i in range(paying):
            # A company per paid invoice (a company may have only a few open invoices, and its second order would
            # start, and get its УПД, only when the first one's period ends): 100 payments, 100 УПД formed.
            account, _owner = _company(db, "ООО «Ромашка»")
            order = _invoice_order(db, account.id, f"bench-st-{i}")
            invoice = issue_invoice(db, order, actor=None, now=utcnow(), config=app.config)
            db.commit()
            docs.append((invoice.number, invoice.amount))
    render.render_invoice_pdf = real_invoice_pdf

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
    figures = []
    for label in (
        f"import {size} orders: {paying} pay invoices, the rest listed for support",
        "the same file again: nothing changes",
    ):
        forming.clear()
        with app.app_context(), maker() as db, counter:
            t0 = time.perf_counter()
            result = import_statement(db, data, file_name="bench.txt", actor=None, now=utcnow(), config=app.config)
            elapsed = time.perf_counter() - t0
        rendering = sum(forming)
        figures.append((elapsed - rendering, rendering))
        rows.append(
            [
                label,
                f"{elapsed - rendering:.2f} s",
                f"{(elapsed - rendering) / size * 1e6:.0f} µs",
                str(counter.count),
                result.summary,
            ]
        )
        if rendering > 0.001:
            rows.append(
                [
                    f"… then the УПД of the paid invoices formed (PDF + XML, real rendering, {paying})",
                    f"{rendering:.2f} s",
                    f"{rendering / paying * 1000:.0f} ms per УПД",
                    "",
                    "",
                ]
            )
    documents_service.form_documents = documents_tasks.form_documents = real_form
    table(["step", "time", "per order", "SQL queries", "result"], rows)
    SUMMARY["statement_orders"] = size
    SUMMARY["statement_import_s"] = round(figures[0][0], 3)
    SUMMARY["statement_upd_forming_s"] = round(figures[0][1], 3)
    SUMMARY["statement_import_with_upds_s"] = round(sum(figures[0]), 3)
    SUMMARY["statement_reimport_s"] = round(sum(figures[1]), 3)


def tasks(tmp: Path) -> None:
    """Long work started from the web under gunicorn's defaults (sync workers, 30 s timeout) and done by a task
    queue worker (`flask worker`, SQLite queue): a CRM's first import of 10 000 users, a 10 000-order statement."""
    import re

    import requests
    import sqlalchemy as sa

    from devtools.crm_emulator import running_emulator
    from portal.accounts.service import make_staff
    from portal.db import utcnow
    from portal.documents.invoices import issue_invoice
    from portal.payments.statement import build_statement
    from portal.seats.crm.base import CrmAccountInfo
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
