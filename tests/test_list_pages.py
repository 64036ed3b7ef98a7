"""Issue #18: a long list costs what a short one does. /team, /documents, /crm, a CRM run's journal and the audit log
show a page at a time, asked by the key of the last row shown (no OFFSET, no count, no loading everything), so the
number of SQL statements of a page is the same with 10 rows as with 1 000, and walking «Дальше» (and back with
«Назад») shows every row exactly once, ties in the sort key included. On PostgreSQL support's search by part of a
name is answered by a trigram index."""

from __future__ import annotations

import html
import re
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa

from portal.accounts.models import Account, Membership, MembershipStatus, Role, Source, User
from portal.audit import AuditLog
from portal.billing.models import Order
from portal.documents.models import Invoice, Upd
from portal.seats.crm.models import CrmConnection, CrmSyncEntry, CrmSyncRun, CrmUserState
from tests.conftest import Auth

OWNER = "+79163330000"
STAFF = "+79990000099"
NOW = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)
DAY = date(2026, 11, 20)


# --- growing an account by n rows of each list, in a few bulk INSERTs -------------------------------------------


class Grower:
    """Adds rows to each list of one account; the counters keep keys unique across calls."""

    def __init__(self, db: Any, account: Account, staff: User) -> None:
        self.db, self.account, self.staff = db, account, staff
        self.members = self.documents = self.audit = self.crm = 0
        self.run = CrmSyncRun(account_id=account.id, trigger="cron", started_at=NOW, status="ok", changes=0)
        db.add(
            CrmConnection(
                account_id=account.id, backend="emulator", base_url="http://crm", subdomain="big", access_token_enc="x"
            )
        )
        db.add(self.run)
        db.commit()

    def grow(self, n: int) -> None:
        if not n:
            return
        self._members(n)
        self._documents(n)
        self._audit(n)
        self._crm(n)
        self.db.commit()

    def _members(self, n: int) -> None:
        start, self.members = self.members, self.members + n
        phones = [f"+7926{i:07d}" for i in range(start, start + n)]
        self.db.execute(sa.insert(User), [{"phone": p, "name": "x", "created_at": NOW} for p in phones])
        ids = self.db.scalars(sa.select(User.id).where(User.phone.in_(phones)).order_by(User.id)).all()
        statuses = (MembershipStatus.ACTIVE.value,) * 3 + (
            MembershipStatus.DEACTIVATED.value,
            MembershipStatus.LEFT.value,
        )
        roles = (Role.MEMBER.value,) * 4 + (Role.ACCOUNTANT.value,)
        self.db.execute(
            sa.insert(Membership),
            [
                {
                    "account_id": self.account.id,
                    "user_id": uid,
                    # Names repeat (ties in the sort key): «Сотрудник 0» … «Сотрудник 6».
                    "name": f"Сотрудник {(start + i) % 7}",
                    "role": roles[(start + i) % len(roles)],
                    "status": statuses[(start + i) % len(statuses)],
                    "source": Source.MESSENGER.value,
                    "created_at": NOW,
                    "updated_at": NOW,
                }
                for i, uid in enumerate(ids)
            ],
        )

    def _documents(self, n: int) -> None:
        start, self.documents = self.documents, self.documents + n
        keys = [f"list-pages-{i}" for i in range(start, start + n)]
        self.db.execute(
            sa.insert(Order),
            [
                {
                    "account_id": self.account.id,
                    "plan_code": "users-12",
                    "months": 6,
                    "kind": "new",
                    "monthly_price": 99_000,
                    "subtotal": 594_000,
                    "discount_percent": 0,
                    "discount": 0,
                    "amount": 594_000,
                    "starts_on": DAY,
                    "ends_on": DAY + timedelta(days=182),
                    "payer_type": "legal",
                    "status": "pending",
                    "idempotency_key": key,
                    "license_version": "1",
                    "license_accepted_at": NOW,
                    "created_at": NOW,
                }
                for key in keys
            ],
        )
        orders = self.db.scalars(sa.select(Order.id).where(Order.idempotency_key.in_(keys)).order_by(Order.id)).all()
        # Seven documents a day: many share a date (ties), and every other invoice has its УПД on the same day.
        self.db.execute(
            sa.insert(Invoice),
            [
                {
                    "account_id": self.account.id,
                    "order_id": order_id,
                    "number": f"2026-{start + i:06d}",
                    "year": 2026,
                    "serial": start + i,
                    "issued_on": DAY - timedelta(days=(start + i) // 7),
                    "valid_until": DAY,
                    "amount": 594_000,
                    "line_name": "Лицензия",
                    "buyer": {},
                    "purpose": "Оплата",
                    "qr_payload": "ST00012",
                    "status": "issued",
                    "created_at": NOW,
                }
                for i, order_id in enumerate(orders)
            ],
        )
        invoices = self.db.execute(
            sa.select(Invoice.id, Invoice.serial, Invoice.issued_on)
            .where(Invoice.order_id.in_(orders))
            .order_by(Invoice.id)
        ).all()
        self.db.execute(
            sa.insert(Upd),
            [
                {
                    "account_id": self.account.id,
                    "invoice_id": invoice_id,
                    "number": f"У-{serial:06d}",
                    "year": 2026,
                    "serial": serial,
                    "doc_date": issued_on,
                    "amount": 594_000,
                    "context": {},
                    "status": "formed",
                    "created_at": NOW,
                }
                for invoice_id, serial, issued_on in invoices
                if serial % 2 == 0
            ],
        )

    def _audit(self, n: int) -> None:
        if not n:
            return
        start, self.audit = self.audit, self.audit + n
        self.db.execute(
            sa.insert(AuditLog),
            [
                {
                    "at": NOW,
                    "actor_user_id": self.staff.id,
                    "actor_label": "Поддержка",
                    "account_id": self.account.id,
                    "action": "support.request_taken",
                    "reason": f"запись rec-{i}-",
                }
                for i in range(start, start + n)
            ],
        )

    def _crm(self, n: int) -> None:
        start, self.crm = self.crm, self.crm + n
        self.db.execute(
            sa.insert(CrmSyncEntry),
            [
                {"run_id": self.run.id, "kind": "imported", "subject": f"Человек-{i}-", "message": "создан"}
                for i in range(start, start + n)
            ],
        )
        self.db.execute(
            sa.insert(CrmUserState),
            [
                {
                    "account_id": self.account.id,
                    "crm_user_id": 10_000 + i,
                    "name": f"Ждёт {i % 5}",  # ties again
                    "email": f"wait{i}@example.ru",
                    "is_active": True,
                    "is_free": False,
                    "is_admin": False,
                    "pending_reason": "no_phone",
                }
                for i in range(start, start + n)
            ],
        )


@pytest.fixture
def grower(app, db, make_account) -> Grower:
    account = make_account(owner_phone=OWNER)
    staff = User(phone=STAFF, name="Ирина Поддержкина", is_staff=True)
    db.add(staff)
    db.commit()
    return Grower(db, account, staff)


def _offsets(statement: str, parameters: Any) -> list[Any]:
    """The OFFSET values of a statement as executed (SQLite's dialect writes `OFFSET ?` = 0 after every LIMIT)."""
    values = []
    for match in re.finditer(r"OFFSET (\?|%\((\w+)\)s|\d+)", statement):
        token = match.group(1)
        if token == "?":
            values.append(parameters[statement[: match.end()].count("?") - 1])
        elif match.group(2):
            values.append(parameters[match.group(2)])
        else:
            values.append(int(token))
    return values


def _count_statements(app: Any, client: Any, path: str) -> tuple[int, str]:
    engine = app.extensions["portal.db"].engine
    seen: list[tuple[str, Any]] = []

    def record(_conn: Any, _cursor: Any, statement: str, parameters: Any, *_args: Any) -> None:
        seen.append((statement, parameters))

    sa.event.listen(engine, "before_cursor_execute", record)
    try:
        resp = client.get(path)
    finally:
        sa.event.remove(engine, "before_cursor_execute", record)
    assert resp.status_code == 200, path
    deep = [s for s, p in seen if any(_offsets(s, p))]
    assert not deep, f"{path} skips rows by OFFSET: {deep[0][:300]}"
    return len(seen), resp.get_data(as_text=True)


def _link(page: str, rel: str) -> str | None:
    match = re.search(rf'href="([^"]+)" rel="{rel}"', page)
    return html.unescape(match.group(1)) if match else None


OWNER_PAGES = ("/team", "/team?status=all", "/team?q=Сотрудник", "/documents", "/crm", "/crm/runs/{run}")


def test_each_list_page_costs_the_same_statements_at_10_and_at_1000_rows(app, client, auth, sms, grower):
    grower.grow(10)
    auth.login(OWNER)
    client.get("/")  # the session's account is chosen on the first page
    staff = app.test_client()
    Auth(staff, sms).login(STAFF)
    paths = [(client, p.format(run=grower.run.id)) for p in OWNER_PAGES] + [(staff, "/support/audit")]
    small = {path: _count_statements(app, who, path)[0] for who, path in paths}
    grower.grow(990)
    large: dict[str, int] = {}
    for who, path in paths:
        large[path], page = _count_statements(app, who, path)
        following = _link(page, "next")
        assert following, f"{path} has more than a page at 1 000 rows"
        assert _count_statements(app, who, following)[0] == large[path], following  # a later page: the same
    assert large == small


def _walk(client: Any, first: str, pattern: str) -> tuple[list[str], list[str]]:
    """Every row's marker walking «Дальше» from the first page, then «Назад» from the last; each in list order."""
    forward: list[str] = []
    pages: list[list[str]] = []
    path: str | None = first
    while path:
        page = client.get(path).get_data(as_text=True)
        rows = re.findall(pattern, page)
        pages.append(rows)
        forward += rows
        path = _link(page, "next")
        last = page
        assert len(pages) < 100
    backward: list[str] = list(pages[-1])
    path = _link(last, "prev")
    while path:
        page = client.get(path).get_data(as_text=True)
        backward = re.findall(pattern, page) + backward
        path = _link(page, "prev")
    return forward, backward


@pytest.mark.parametrize(
    ("path", "pattern", "expected"),
    [
        ("/team?status=all", r'id="user-(\d+)"', lambda g: g.members + 1),  # + the owner
        ("/team", r'id="user-(\d+)"', lambda g: sum(1 for i in range(g.members) if i % 5 < 3) + 1),
        ("/documents", r'<td class="nowrap">№ ([^<]+)</td>', lambda g: g.documents + (g.documents + 1) // 2),
        ("/documents?kind=upd", r'<td class="nowrap">№ ([^<]+)</td>', lambda g: (g.documents + 1) // 2),
        ("/crm", r"wait(\d+)@example", lambda g: g.crm),
        ("/crm/runs/{run}", r"Человек-(\d+)-", lambda g: g.crm),
    ],
)
def test_walking_forward_and_back_shows_every_row_once(
    app, client, auth, grower, path: str, pattern: str, expected: Callable[[Grower], int]
):
    grower.grow(237)
    auth.login(OWNER)
    client.get("/")
    forward, backward = _walk(client, path.format(run=grower.run.id), pattern)
    assert len(forward) == len(set(forward)) == expected(grower)
    assert backward == forward  # the same rows in the same order, page by page back


def test_the_team_keeps_its_order_across_pages(app, client, auth, grower):
    """Active first, then owners, accountants, members, each by name — across the page boundaries too."""
    grower.grow(180)
    auth.login(OWNER)
    client.get("/")
    forward, _ = _walk(client, "/team?status=all", r'id="user-(\d+)"')
    db = grower.db
    rows = {
        str(uid): (status, role, name)
        for uid, status, role, name in db.execute(
            sa.select(Membership.user_id, Membership.status, Membership.role, Membership.name).where(
                Membership.account_id == grower.account.id
            )
        )
    }
    ranks = {"owner": 0, "accountant": 1, "member": 2}
    keys = [(rows[u][0] != "active", ranks[rows[u][1]], rows[u][2]) for u in forward]
    assert keys == sorted(keys)


def test_the_audit_log_walks_both_ways(app, client, auth, grower):
    grower.grow(0)
    grower._audit(163)
    grower.db.commit()
    auth.login(STAFF)
    forward, backward = _walk(client, "/support/audit?action=support.", r"rec-(\d+)-")
    assert forward == [str(i) for i in range(162, -1, -1)]  # newest first, each once
    assert backward == forward


def test_a_mangled_page_key_shows_the_first_page(app, client, auth, grower):
    grower.grow(60)
    auth.login(OWNER)
    client.get("/")
    first = client.get("/team").get_data(as_text=True)
    for key in ("zzz", "W10", "WyJhIiwxXQ", "a" * 2000):
        resp = client.get(f"/team?after={key}")
        assert resp.status_code == 200, key
        assert re.findall(r'id="user-(\d+)"', resp.get_data(as_text=True)) == re.findall(r'id="user-(\d+)"', first)


def test_the_audit_filter_offers_the_known_actions_without_reading_the_log(app, client, auth, grower):
    grower.grow(0)
    auth.login(STAFF)
    engine = app.extensions["portal.db"].engine
    seen: list[str] = []
    sa.event.listen(engine, "before_cursor_execute", lambda *a: seen.append(a[2]))
    try:
        page = client.get("/support/audit").get_data(as_text=True)
    finally:
        engine.dispatch.before_cursor_execute.clear()
    assert not [s for s in seen if "DISTINCT" in s.upper() and "audit_log" in s]
    assert 'value="billing.trial_started"' in page and "Начат пробный период" in page


def test_support_search_by_part_of_a_name_uses_the_trigram_index(pg_url, app, db):
    from portal.support.search import search_accounts

    db.execute(sa.insert(Account), [{"name": f"ООО «Компания {i:05d}»", "created_at": NOW} for i in range(3000)])
    db.execute(sa.insert(Account), [{"name": "ООО «Ромашка-Север»", "created_at": NOW}])
    db.commit()
    db.execute(sa.text("ANALYZE accounts"))
    db.commit()

    engine = app.extensions["portal.db"].engine
    seen: list[tuple[str, Any]] = []

    def record(_conn: Any, _cursor: Any, statement: str, parameters: Any, *_args: Any) -> None:
        seen.append((statement, parameters))

    sa.event.listen(engine, "before_cursor_execute", record)
    try:
        hits = search_accounts(db, "ромашка")
    finally:
        sa.event.remove(engine, "before_cursor_execute", record)
    assert [h.account.name for h in hits] == ["ООО «Ромашка-Север»"]
    statement, parameters = next((s, p) for s, p in seen if "FROM accounts" in s and "ILIKE" in s)
    conn = db.connection()
    # On a table this small the planner may rightly prefer reading it whole; forbid that to see the index serve.
    conn.exec_driver_sql("SET LOCAL enable_seqscan = off")
    plan = "\n".join(r[0] for r in conn.exec_driver_sql("EXPLAIN " + statement, parameters))
    assert "ix_accounts_name_trgm" in plan, plan
    db.rollback()
