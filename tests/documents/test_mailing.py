"""Closing documents by e-mail through a real SMTP server on loopback: each УПД once, or one letter a month with
the month's documents and a ZIP; a refused letter is retried later; and the several-companies page."""

from __future__ import annotations

import email
import io
import zipfile
from datetime import UTC, datetime, timedelta
from email import policy

import sqlalchemy as sa

from portal.documents import mailing
from portal.documents.models import DocumentMail, EdoDocument, EdoStatus
from portal.support.email import SmtpEmailBackend
from tests.documents.factories import ORG, give_requisites
from tests.documents.test_edo import paid_upd
from tests.support.smtp_fake import FakeSmtpState, fake_smtp_server


def run(app, db, backend, now) -> list[str]:
    with app.app_context():
        return mailing.sweep(db, now=now, config=app.config, backend=backend, instance_path=app.instance_path)


def parsed(raw: bytes) -> email.message.EmailMessage:
    return email.message_from_bytes(raw, policy=policy.default)


def test_monthly_letter_arrives_once_with_the_months_documents_and_a_zip(app, db, make_account):
    account = make_account()
    give_requisites(db, account, {**ORG, "mail_mode": "monthly"})
    upd = paid_upd(app, db, account)
    with fake_smtp_server() as (host, port, state):
        backend = SmtpEmailBackend(host, port)
        run(app, db, backend, datetime(2026, 11, 28, 9, tzinfo=UTC))  # November is not over: nothing yet
        assert state.messages == []
        december = datetime(2026, 12, 1, 6, tzinfo=UTC)
        run(app, db, backend, december)
        run(app, db, backend, december + timedelta(hours=1))  # the next sweep sends nothing again
    assert len(state.messages) == 1
    letter = parsed(state.messages[0].data)
    assert state.messages[0].rcpt_to == [ORG["email"]]
    assert letter["Subject"] == "Закрывающие документы за ноябрь 2026 — ООО «Мессенджер Плюс»"
    body = letter.get_body(("plain",)).get_content()
    assert f"УПД № {upd.number} от {upd.doc_date:%d.%m.%Y}" in body
    names = [part.get_filename() for part in letter.iter_attachments()]
    assert any(n.endswith(".pdf") for n in names) and any(n.endswith(".xml") for n in names)
    archive = next(p for p in letter.iter_attachments() if p.get_filename().endswith(".zip"))
    inside = zipfile.ZipFile(io.BytesIO(archive.get_content())).namelist()
    assert any(n.startswith("УПД/") for n in inside) and any(n.startswith("Счета на оплату/") for n in inside)


def test_each_document_is_sent_as_formed_and_a_refused_letter_is_retried(app, db, make_account):
    account = make_account()
    give_requisites(db, account, {**ORG, "mail_mode": "each"})
    upd = paid_upd(app, db, account)
    now = datetime(2026, 11, 27, 8, tzinfo=UTC)
    with fake_smtp_server(FakeSmtpState(refuse_rcpt=True)) as (host, port, state):
        run(app, db, SmtpEmailBackend(host, port), now)
        db.expire_all()
        row = db.scalars(sa.select(DocumentMail)).one()
        assert (row.key, row.status, row.attempts) == (f"upd:{upd.id}", "pending", 1)
        assert "отказался" in row.last_error
        state.refuse_rcpt = False
        run(app, db, SmtpEmailBackend(host, port), now + timedelta(seconds=30))  # not due yet
        assert state.messages == []
        run(app, db, SmtpEmailBackend(host, port), now + timedelta(minutes=2))
        run(app, db, SmtpEmailBackend(host, port), now + timedelta(minutes=3))
    assert len(state.messages) == 1
    letter = parsed(state.messages[0].data)
    assert letter["Subject"].startswith(f"УПД № {upd.number}")
    assert "Здравствуйте" in letter.get_body(("plain",)).get_content()
    assert len(list(letter.iter_attachments())) == 2


def test_without_a_choice_nothing_is_mailed(app, db, make_account):
    account = make_account()
    give_requisites(db, account)
    paid_upd(app, db, account)
    with fake_smtp_server() as (host, port, state):
        run(app, db, SmtpEmailBackend(host, port), datetime(2026, 12, 1, 6, tzinfo=UTC))
    assert state.messages == [] and db.scalar(sa.select(sa.func.count()).select_from(DocumentMail)) == 0


def test_accountant_of_two_companies_sees_both_and_never_a_third(app, db, make_account, add_member, auth, client):
    from portal.accounts.models import Role
    from tests.documents.factories import issue

    first = make_account(name="ООО «Первая»", accountant_phone="+79161230001")
    second = make_account(name="ООО «Вторая»")
    add_member(second, "+79161230001", "Бухгалтер", Role.ACCOUNTANT)
    stranger = make_account(name="ООО «Чужая»")
    for account, inn, kpp in (
        (first, "7707083893", "773601001"),
        (second, "7728146350", "772801001"),
        (stranger, "7736207543", "773601001"),
    ):
        give_requisites(db, account, {**ORG, "name": account.name, "inn": inn, "kpp": kpp})
    unpaid = issue(app, db, first)
    strangers = issue(app, db, stranger)
    upd = paid_upd(app, db, second)
    db.add(
        EdoDocument(
            account_id=second.id,
            kind="upd",
            document_id=upd.id,
            number=upd.number,
            recipient_id="2BM-1",
            status=EdoStatus.REJECTED.value,
            reject_reason="Не тот адрес",
        )
    )
    db.commit()
    auth.login("+79161230001")
    page = client.get("/documents/attention").get_data(as_text=True)
    assert "ООО «Первая»" in page and f"№ {unpaid.number}" in page and "Счёт не оплачен" in page
    assert "ООО «Вторая»" in page and "УПД отклонён покупателем" in page and "Не тот адрес" in page
    assert "Чужая" not in page and strangers.number not in page


def test_a_ukd_is_mailed_as_formed_with_what_it_changes(app, db, make_account):
    from portal.documents.corrections import form_pending_corrections
    from portal.documents.models import Invoice
    from portal.payments import refunds

    account = make_account()
    give_requisites(db, account, {**ORG, "mail_mode": "each"})
    upd = paid_upd(app, db, account)
    now = datetime(2026, 12, 10, 8, tzinfo=UTC)
    with app.app_context():
        refunds.refund_rights(
            db,
            db.get(Invoice, upd.invoice_id).order_id,
            cut_on=now.date() + timedelta(days=1),
            amount=123_45,
            reason="Закрытие",
            actor=None,
            now=now,
            config=app.config,
        )
        db.commit()
        form_pending_corrections(db, now=now, config=app.config)
    with fake_smtp_server() as (host, port, state):
        run(app, db, SmtpEmailBackend(host, port), now)
        run(app, db, SmtpEmailBackend(host, port), now + timedelta(minutes=5))
    subjects = sorted(parsed(m.data)["Subject"] for m in state.messages)
    assert len(subjects) == 2 and subjects[0].startswith("УКД № К-2026-000001") and subjects[1].startswith("УПД №")
    letter = next(parsed(m.data) for m in state.messages if parsed(m.data)["Subject"].startswith("УКД"))
    assert "уменьшает стоимость на 123,45 руб." in letter.get_body(("plain",)).get_content().replace("\xa0", " ")
    assert sorted(p.get_filename()[-4:] for p in letter.iter_attachments()) == [".pdf", ".xml"]
