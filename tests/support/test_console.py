"""The console's pages for support staff: the queue, search, the account page and the audit log."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
import sqlalchemy as sa

from portal.accounts.models import Role
from portal.audit import AuditLog
from portal.billing.trial import start_trial
from portal.seats.crm.models import CrmConnection, CrmSyncEntry, CrmSyncRun
from portal.support import requests as service
from tests.documents.factories import IP, ORG, give_requisites, issue

NOW = datetime(2026, 11, 25, 9, 0, tzinfo=UTC)
EXPIRED = "<strong>Пробный период закончился</strong>"  # a row, not the filter's option


@pytest.fixture
def romashka(make_account, db):
    account = make_account(name="ООО «Ромашка»", owner_phone="+79161110000", members=3)
    give_requisites(db, account, ORG)
    return account


@pytest.fixture
def sokolov(make_account, db, add_member):
    account = make_account(name="ИП Соколов С. В.", owner_phone="+79162220000")
    add_member(account, "+79163334455", name="Мария Соколова", role=Role.MEMBER)
    give_requisites(db, account, IP)
    return account


def test_queue_lists_open_requests_oldest_first(staff_client, db, romashka, sokolov):
    first = service.create_request(
        db, actor=db.get(service.User, 1), account_id=sokolov.id, kind="large_plan", users_expected=3000, now=NOW
    )
    db.commit()
    second = service.create_request(
        db, actor=db.get(service.User, 1), account_id=romashka.id, kind="trial", plan_code="users-50",
        now=datetime(2026, 11, 25, 10, 0, tzinfo=UTC),
    )  # fmt: skip
    db.commit()
    page = staff_client.get("/support").get_data(as_text=True)
    assert page.index("ИП Соколов С. В.") < page.index("ООО «Ромашка»")
    assert f"/support/requests/{first.id}" in page and f"/support/requests/{second.id}" in page
    assert "пользователей: 3000" in page and "«50 пользователей»" in page


@pytest.mark.parametrize(
    "query, expected",
    [
        ("ромашка", "ООО «Ромашка»"),  # Cyrillic, lower case
        ('ООО "Ромашка"', "ООО «Ромашка»"),  # other quotes
        ("соколов сергей", "ИП Соколов С. В."),  # the legal name from the requisites
        ("7728146350", "ООО «Ромашка»"),  # ИНН
        ("500301", "ИП Соколов С. В."),  # the start of an ИНН
        ("8 916 333-44-55", "ИП Соколов С. В."),  # a member's phone, typed the Russian way
        ("3334455", "ИП Соколов С. В."),  # its last digits
    ],
)
def test_search_finds_the_account(staff_client, romashka, sokolov, query, expected):
    resp = staff_client.get("/support/search", query_string={"q": query})
    assert resp.status_code == 302  # exactly one hit opens the account page
    target = romashka if expected == "ООО «Ромашка»" else sokolov
    assert resp.headers["Location"].endswith(f"/support/accounts/{target.id}")


def test_search_by_account_number_and_nothing_found(staff_client, romashka, sokolov):
    resp = staff_client.get("/support/search", query_string={"q": f"№ {sokolov.id}"})
    assert resp.headers["Location"].endswith(f"/support/accounts/{sokolov.id}")
    page = staff_client.get("/support/search", query_string={"q": "Лютик"}).get_data(as_text=True)
    assert "ничего не найдено" in page


def test_search_with_several_hits_lists_them(staff_client, db, romashka, make_account):
    make_account(name="ООО «Ромашка-Юг»", owner_phone="+79165550000")
    page = staff_client.get("/support/search", query_string={"q": "ромашка"}).get_data(as_text=True)
    assert "найдено: 2" in page and "ООО «Ромашка-Юг»" in page and "7728146350" in page


def test_account_page_shows_plan_usage_documents_crm_and_audit(quick_render, app, staff_client, db, romashka, staff):
    start_trial(db, actor=staff, account_id=romashka.id, plan_code="users-24", now=NOW)
    db.commit()
    invoice = issue(app, db, romashka, plan="users-50", months=12)
    db.add(CrmConnection(account_id=romashka.id, backend="emulator", base_url="http://crm", subdomain="romashka"))
    run = CrmSyncRun(account_id=romashka.id, trigger="cron", started_at=NOW, status="ok", changes=1)
    db.add(run)
    db.flush()
    db.add(CrmSyncEntry(run_id=run.id, kind="imported", subject="Глеб Васильев", message="создан в мессенджере"))
    db.commit()

    page = staff_client.get(f"/support/accounts/{romashka.id}").get_data(as_text=True)
    assert "24 пользователя" in page and "пробный до" in page  # plan and trial until
    assert "4 из 24" in page  # seats: owner + 3 members
    assert "7728146350" in page and "buh@romashka.example.ru" in page
    assert f"№ {invoice.number}" in page and f"/support/invoices/{invoice.id}/pay" in page
    assert "Глеб Васильев" in page and "по расписанию" in page  # the CRM sync journal
    assert "Начат пробный период" in page  # the account's audit log


def _pager_link(page: str, rel: str) -> str:
    import html
    import re

    match = re.search(rf'href="([^"]+)" rel="{rel}"', page)
    assert match, f"no {rel} link"
    return html.unescape(match.group(1))


def _older_link(page: str) -> str:
    return _pager_link(page, "next")


def _newer_link(page: str) -> str:
    return _pager_link(page, "prev")


def test_audit_page_filters_and_paginates(staff_client, db, romashka, sokolov, staff):
    from portal.audit import record_audit

    for i in range(60):
        record_audit(db, actor=staff, account=romashka.id, action="support.request_taken", after={"request_id": i})
    record_audit(db, actor=None, account=sokolov.id, action="billing.trial_expired", after={"plan": "users-5"})
    db.commit()

    total = db.scalar(sa.select(sa.func.count()).select_from(AuditLog))  # the requisites were audited too
    assert total == 63
    # No count over the whole log (issue #18): the page shows 50 records and a link to the older ones, which
    # carries the last record's key rather than a page number.
    page = staff_client.get("/support/audit").get_data(as_text=True)
    assert page.count("<tr") == 1 + 50 and EXPIRED in page  # newest first
    page2 = staff_client.get(_older_link(page)).get_data(as_text=True)
    assert EXPIRED not in page2 and "Старее" not in page2 and "← Новее" in page2
    assert page2.count("<tr") == 1 + 13  # header + the 13 oldest records
    back = staff_client.get(_newer_link(page2)).get_data(as_text=True)
    assert back.count("<tr") == 1 + 50 and EXPIRED in back and "← Новее" not in back

    by_account = staff_client.get(f"/support/audit?account={sokolov.id}").get_data(as_text=True)
    assert by_account.count("<tr") == 1 + 2 and EXPIRED in by_account
    by_staff = staff_client.get(f"/support/audit?actor={staff.id}").get_data(as_text=True)
    assert by_staff.count("<tr") == 1 + 50 and EXPIRED not in by_staff
    assert staff_client.get(_older_link(by_staff)).get_data(as_text=True).count("<tr") == 1 + 10  # 60 in all
    by_system = staff_client.get("/support/audit?actor=system").get_data(as_text=True)
    assert by_system.count("<tr") == 1 + 3  # the expiry and the two requisites saved by the test set-up
    by_kind = staff_client.get("/support/audit?action=billing.trial_expired").get_data(as_text=True)
    assert by_kind.count("<tr") == 1 + 1
    by_group = staff_client.get("/support/audit?action=support.").get_data(as_text=True)
    assert by_group.count("<tr") == 1 + 50
    assert staff_client.get(_older_link(by_group)).get_data(as_text=True).count("<tr") == 1 + 10
