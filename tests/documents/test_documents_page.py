"""The documents page: an accountant finds every invoice and УПД, filters them, downloads files and a period's ZIP."""

from __future__ import annotations

import hashlib
import io
import zipfile
from datetime import UTC, date, datetime
from urllib.parse import unquote

import pytest
import sqlalchemy as sa

from portal.documents import render
from portal.documents.models import StoredFile, Upd
from portal.payments.bank import import_statement
from tests.documents.factories import give_requisites, issue, payment, statement

OWNER = "+79161110001"
ACCOUNTANT = "+79161110002"
MEMBER = "+79161110003"


@pytest.fixture
def quick_render(monkeypatch):
    """The page is about listing and serving stored bytes; stand-ins keep rendering out of the way."""
    monkeypatch.setattr(render, "render_invoice_pdf", lambda ctx: f"%PDF-invoice {ctx['number']}".encode())
    monkeypatch.setattr(render, "render_upd_pdf", lambda ctx: f"%PDF-upd {ctx['number']}".encode())


@pytest.fixture
def documents(quick_render, app, db, make_account, add_member):
    """Invoices of October and November 2026 and January 2027; the November one is paid (so it has a УПД)."""
    from portal.accounts.models import Role

    account = make_account(name="ООО «Ромашка»", owner_phone=OWNER, accountant_phone=ACCOUNTANT)
    add_member(account, MEMBER, role=Role.MEMBER)
    give_requisites(db, account)
    october = issue(app, db, account, now=datetime(2026, 10, 5, 9, tzinfo=UTC))
    november = issue(app, db, account, now=datetime(2026, 11, 25, 9, tzinfo=UTC))
    january = issue(app, db, account, months=6, now=datetime(2027, 1, 15, 9, tzinfo=UTC))
    data = statement(payment("512", november.amount, f"Оплата по счёту № {november.number}"))
    with app.app_context():
        import_statement(db, data, file_name="s.txt", actor=None, now=datetime(2026, 11, 27, 7, tzinfo=UTC))
    upd = db.scalars(sa.select(Upd)).one()
    return account, october, november, january, upd


def test_accountant_sees_invoices_and_upd_with_number_date_amount_status(client, auth, documents):
    _, october, november, january, upd = documents
    auth.login(ACCOUNTANT)
    resp = client.get("/documents")
    assert resp.status_code == 200
    html = resp.get_data(as_text=True)
    for number in ("2026-000001", "2026-000002", "2027-000001"):
        assert f"№ {number}" in html
    assert "05.10.2026" in html and "25.11.2026" in html and "15.01.2027" in html and "27.11.2026" in html
    assert "8\u00a0464,50\u00a0₽" in html and "5\u00a0940,00\u00a0₽" in html
    assert "Оплачен" in html and "Ожидает оплаты" in html and "Сформирован" in html
    assert f'href="/documents/upd/{upd.id}/pdf"' in html and f'href="/documents/upd/{upd.id}/xml"' in html
    assert f'href="/documents/invoices/{january.id}/pdf"' in html
    assert f'УПД<span class="doc-ref">по <a href="/documents/invoices/{november.id}">счёту № 2026-000002</a>' in html


def test_filter_by_month_quarter_year_and_kind(client, auth, documents):
    _, october, november, january, upd = documents
    auth.login(OWNER)

    def numbers(query: str) -> list[str]:
        html = client.get(f"/documents?{query}").get_data(as_text=True)
        return [n for n in ("2026-000001", "2026-000002", "2027-000001") if f'<td class="nowrap">№ {n}</td>' in html]

    assert numbers("period=2026-11") == ["2026-000001", "2026-000002"]  # the November invoice is 000002, its УПД 000001
    assert numbers("period=2026-10") == ["2026-000001"]
    assert numbers("period=2026-Q4") == ["2026-000001", "2026-000002"]
    assert numbers("period=2027") == ["2027-000001"]
    assert numbers("period=2026-11&kind=upd") == ["2026-000001"]
    html = client.get("/documents?period=2026-11&kind=invoice").get_data(as_text=True)
    assert "№ 2026-000002" in html and "УПД<span" not in html
    assert client.get("/documents?period=2026-13").status_code == 400
    assert client.get("/documents?kind=act").status_code == 400
    # The filter offers the periods that have documents.
    html = client.get("/documents").get_data(as_text=True)
    assert 'value="2026-11"' in html and 'value="2026-Q4"' in html and 'value="2027-01"' in html
    assert 'value="2026-09"' not in html


def test_zip_of_a_month_and_of_a_quarter(client, auth, app, db, documents):
    account, october, november, january, upd = documents
    auth.login(ACCOUNTANT)
    resp = client.get("/documents/archive?period=2026-11")
    assert resp.status_code == 200
    assert resp.mimetype == "application/zip"
    assert unquote(resp.headers["Content-Disposition"].split("filename*=UTF-8''")[1]) == "Документы за ноябрь 2026.zip"
    archive = zipfile.ZipFile(io.BytesIO(resp.data))
    names = sorted(archive.namelist())
    xml_name = db.get(StoredFile, upd.xml_file_id).download_name
    assert names == sorted(
        [
            "Счета на оплату/Счёт на оплату № 2026-000002 от 25.11.2026.pdf",
            "УПД/УПД № 2026-000001 от 27.11.2026.pdf",  # dated the day the rights begin
            f"УПД/{xml_name}",
        ]
    )
    # Each file in the ZIP is the stored document, byte for byte.
    for info in archive.infolist():
        data = archive.read(info)
        assert hashlib.sha256(data).hexdigest() in {f.sha256 for f in db.scalars(sa.select(StoredFile))}
    assert archive.read("УПД/УПД № 2026-000001 от 27.11.2026.pdf") == b"%PDF-upd 2026-000001"

    quarter = zipfile.ZipFile(io.BytesIO(client.get("/documents/archive?period=2026-Q4").data))
    assert len(quarter.namelist()) == 4
    assert "Счета на оплату/Счёт на оплату № 2026-000001 от 05.10.2026.pdf" in quarter.namelist()

    assert client.get("/documents/archive?period=2026").status_code == 400  # a year is too much for one download
    empty = client.get("/documents/archive?period=2026-09")
    assert empty.status_code == 302 and empty.headers["Location"] == "/documents?period=2026-09"


def test_xml_download_keeps_the_fns_file_name(client, auth, db, documents):
    *_, upd = documents
    auth.login(ACCOUNTANT)
    resp = client.get(f"/documents/upd/{upd.id}/xml")
    assert resp.status_code == 200
    assert resp.mimetype == "application/xml"
    name = db.get(StoredFile, upd.xml_file_id).download_name
    assert f"filename*=UTF-8''{name}" in resp.headers["Content-Disposition"]
    assert resp.data.startswith(b'<?xml version="1.0" encoding="windows-1251"?>')


def test_members_get_403_everywhere(client, auth, documents):
    _, october, *_rest, upd = documents
    auth.login(MEMBER)
    for path in (
        "/documents",
        f"/documents/invoices/{october.id}",
        f"/documents/invoices/{october.id}/pdf",
        f"/documents/upd/{upd.id}/pdf",
        "/documents/archive?period=2026-11",
    ):
        assert client.get(path).status_code == 403, path
    assert "Документы" not in client.get("/", follow_redirects=True).get_data(as_text=True).split("</nav>")[0]


def test_another_accounts_documents_are_not_found(client, auth, documents, make_account):
    _, october, *_rest, upd = documents
    make_account(name="ООО «Чужая»", owner_phone="+79161119999")
    auth.login("+79161119999")
    assert client.get("/documents").status_code == 200
    for path in (
        f"/documents/invoices/{october.id}",
        f"/documents/invoices/{october.id}/pdf",
        f"/documents/upd/{upd.id}/pdf",
        f"/documents/upd/{upd.id}/xml",
    ):
        assert client.get(path).status_code == 404, path
    assert "2026-000001" not in client.get("/documents").get_data(as_text=True)


def test_paid_invoice_page_links_the_upd_and_shows_no_qr(client, auth, documents):
    _, october, november, _january, upd = documents
    auth.login(ACCOUNTANT)
    html = client.get(f"/documents/invoices/{november.id}").get_data(as_text=True)
    assert "Счёт оплачен 26.11.2026 (п/п № 512 от 26.11.2026)" in html
    assert f"УПД № {upd.number} от 27.11.2026 готов" in html
    assert "data:image/png" not in html


def test_overdue_invoice_says_so(client, auth, documents):
    _, october, *_ = documents
    auth.login(ACCOUNTANT)
    html = client.get(f"/documents/invoices/{october.id}").get_data(as_text=True)
    assert "Срок оплаты истёк 12.10.2026" in html


def test_a_tampered_file_is_not_served(client, auth, app, db, documents):
    _, october, *_ = documents
    stored = db.get(StoredFile, october.pdf_file_id)
    path = app.config["DOCUMENT_STORE_PATH"] + "/" + stored.path
    with open(path, "ab") as fh:
        fh.write(b"x")
    auth.login(ACCOUNTANT)
    assert client.get(f"/documents/invoices/{october.id}/pdf").status_code == 500
    assert date(2026, 10, 5) == october.issued_on
