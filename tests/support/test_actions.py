"""Each support action: confirmed, done through the owning service, audited with who, when, before → after, why."""

from __future__ import annotations

import io
import re
from datetime import UTC, datetime
from email import message_from_bytes, policy

import pytest
import sqlalchemy as sa

from portal.billing.catalog import TB
from portal.billing.models import CustomPlan, Order
from portal.billing.pricing import quote
from portal.billing.subscriptions import get_subscription_state
from portal.db import utcnow
from portal.documents.models import Invoice, Upd
from portal.money import format_rub
from portal.payments import ledger
from portal.payments.models import LineStatus, StatementLine
from portal.support.models import SupportRequest
from portal.timeutil import msk_date
from tests.conftest import post
from tests.documents.factories import ORG, give_requisites, issue, payment, statement
from tests.support.conftest import text_of

OWNER = "+79161110000"
NOW = datetime(2026, 11, 25, 9, 0, tzinfo=UTC)
REASON = "Клиент попросил по телефону"


@pytest.fixture
def company(make_account, db):
    account = make_account(name="ООО «Ромашка»", owner_phone=OWNER, members=2)
    give_requisites(db, account, ORG)
    return account


def state_of(db, account):
    db.expire_all()
    return get_subscription_state(db, account.id, utcnow())


def confirmed(**fields):
    return {"reason": REASON, "confirm": "y", **fields}


# --- trial ------------------------------------------------------------------------------------------------


def test_switch_on_a_trial_month(staff_client, db, company, staff, audit):
    page = staff_client.get(f"/support/accounts/{company.id}/trial").get_data(as_text=True)
    assert "Включить пробный месяц" in page and 'value="users-1000"' in page

    resp = post(staff_client, f"/support/accounts/{company.id}/trial", confirmed(plan_code="users-50"))
    assert resp.status_code == 302
    state = state_of(db, company)
    assert state.is_trial and state.plan.code == "users-50" and state.trial_used
    [record] = audit(db, "support.trial_switched_on", company.id)
    assert record.actor_user_id == staff.id and record.actor_label == f"{staff.name} ({staff.phone})"
    assert record.reason == REASON
    assert record.before["status"] == "free" and record.before["plan"] == "users-5"
    assert record.after["status"] == "trial" and record.after["plan"] == "users-50"
    assert record.after["trial_until"] == state.trial_until.isoformat()
    assert len(audit(db, "billing.trial_started", company.id)) == 1


def test_second_trial_is_refused_with_a_clear_message(staff_client, db, company, audit):
    post(staff_client, f"/support/accounts/{company.id}/trial", confirmed(plan_code="users-24"))
    again = post(staff_client, f"/support/accounts/{company.id}/trial", confirmed(plan_code="users-200"))
    assert again.status_code == 400
    assert "Пробный период уже был включён" in again.get_data(as_text=True)
    assert "предоставляется один раз" in again.get_data(as_text=True)
    assert state_of(db, company).plan.code == "users-24"
    assert len(audit(db, "support.trial_switched_on", company.id)) == 1


@pytest.mark.parametrize(
    "form, words",
    [
        ({"plan_code": "users-50", "reason": REASON}, "Поставьте галочку"),
        ({"plan_code": "users-50", "confirm": "y"}, "Укажите причину"),
        ({"plan_code": "users-5", "reason": REASON, "confirm": "y"}, "Бесплатный тариф не нужно пробовать"),
        ({"plan_code": "users-7", "reason": REASON, "confirm": "y"}, "не найден"),
    ],
)
def test_trial_needs_confirmation_reason_and_a_paid_plan(staff_client, db, company, audit, form, words):
    resp = post(staff_client, f"/support/accounts/{company.id}/trial", form)
    assert resp.status_code == 400 and words in resp.get_data(as_text=True)
    assert not state_of(db, company).trial_used
    assert audit(db, "support.trial_switched_on") == []


def test_trial_from_a_request_closes_it(staff_client, client, auth, db, company):
    req = SupportRequest(account_id=company.id, kind="trial", plan_code="users-50", status="open", created_at=NOW)
    db.add(req)
    db.commit()
    page = staff_client.get(f"/support/accounts/{company.id}/trial?request={req.id}").get_data(as_text=True)
    assert re.search(r'<input checked[^>]*value="users-50"', page) and f"№ {req.id}" in page
    resp = post(
        staff_client, f"/support/accounts/{company.id}/trial", confirmed(plan_code="users-50", request_id=req.id)
    )
    assert resp.status_code == 302
    db.expire_all()
    row = db.get(SupportRequest, req.id)
    assert row.status == "done" and "Пробный период тарифа «50 пользователей» включён" in row.staff_note


# --- custom plan ------------------------------------------------------------------------------------------


def test_create_a_custom_plan_the_owner_can_buy(staff_client, client, auth, db, company, audit, staff):
    resp = post(
        staff_client,
        f"/support/accounts/{company.id}/custom-plan",
        confirmed(seats="1 500", storage="3", storage_unit="TB", monthly_price="44 990,50"),
    )
    assert resp.status_code == 302
    db.expire_all()
    [plan] = db.scalars(sa.select(CustomPlan).where(CustomPlan.account_id == company.id)).all()
    assert (plan.seats, plan.storage_bytes, plan.monthly_price) == (1500, 3 * TB, 4_499_050)
    [record] = audit(db, "support.custom_plan_set", company.id)
    assert record.before is None and record.after["monthly_price"] == 4_499_050 and record.reason == REASON
    assert record.actor_user_id == staff.id

    # The owner sees it on the plans page and can take it to the checkout like any plan.
    auth.logout()
    auth.login(OWNER)
    plans = text_of(client.get("/plans"))
    assert "Индивидуальный: 1500 пользователей" in plans and "Только для вас" in plans
    checkout = client.get(f"/checkout?plan={plan.code}&months=12")
    assert checkout.status_code == 200
    assert format_rub(quote(plan.as_plan(), 12).total) in checkout.get_data(as_text=True)


@pytest.mark.parametrize(
    "fields, words",
    [
        ({"seats": "1000"}, "более чем 1000 пользователей"),
        ({"seats": "тысяча"}, "целое число"),
        ({"monthly_price": "29,990"}, "Если это 29 990 ₽"),
        ({"monthly_price": "29990,505"}, "не больше двух цифр"),
        ({"monthly_price": "-5"}, "не может быть отрицательной"),
        ({"monthly_price": "0"}, "больше нуля"),
        ({"monthly_price": ""}, "Укажите цену"),
        ({"storage": "0"}, "больше нуля"),
        ({"storage": "1,5"}, "целое число"),
        ({"confirm": ""}, "Поставьте галочку"),
    ],
)
def test_custom_plan_with_bad_numbers_is_refused(staff_client, db, company, audit, fields, words):
    form = confirmed(seats="1500", storage="3", storage_unit="TB", monthly_price="29 990,00")
    form.update(fields)
    if form["confirm"] == "":
        del form["confirm"]
    resp = post(staff_client, f"/support/accounts/{company.id}/custom-plan", form)
    assert resp.status_code == 400 and words in resp.get_data(as_text=True)
    assert db.scalars(sa.select(CustomPlan)).all() == []
    assert audit(db, "support.custom_plan_set") == []


# --- invoices ---------------------------------------------------------------------------------------------


@pytest.fixture
def invoice(quick_render, app, db, company):
    return issue(app, db, company, plan="users-12", months=9, now=utcnow())  # 8 464,50 ₽


def pay_form(**extra):
    fields = {"bank_reference": "п/п № 512 от 25.11.2026", "paid_on": msk_date(utcnow()).isoformat(), **extra}
    return confirmed(**fields)


def test_the_request_that_pays_answers_before_the_upd_is_rendered_a_worker_forms_it(
    staff_client, db, company, invoice, monkeypatch
):
    """Rendering a УПД is long work: a web request that pays only numbers it and hands the rendering to the queue."""
    from portal.documents import service as documents_service
    from portal.documents.tasks import form_documents_task

    sent = []
    # Where documents hands the rendering to the queue (it imports `enqueue` by name).
    monkeypatch.setattr(documents_service, "enqueue", lambda fn, *args, **kw: sent.append((fn, args)))
    assert post(staff_client, f"/support/invoices/{invoice.id}/pay", pay_form()).status_code == 302
    db.expire_all()
    upd = db.scalars(sa.select(Upd).where(Upd.invoice_id == invoice.id)).one()
    assert upd.status == "pending" and sent == [(form_documents_task, ([upd.id],))]
    form_documents_task.call_local([upd.id])  # what the worker does with the message
    form_documents_task.call_local([upd.id])  # delivered twice: nothing more happens
    db.expire_all()
    formed = db.get(Upd, upd.id)
    assert formed.status == "formed" and formed.attempts == 1


def test_mark_an_invoice_paid_by_hand(staff_client, db, company, invoice, audit, staff):
    page = staff_client.get(f"/support/invoices/{invoice.id}/pay").get_data(as_text=True)
    assert "8\u00a0464,50\u00a0₽" in page and "формируется УПД" in page

    resp = post(staff_client, f"/support/invoices/{invoice.id}/pay", pay_form())
    assert resp.status_code == 302
    db.expire_all()
    paid = db.get(Invoice, invoice.id)
    assert paid.status == "paid" and paid.payment_reference == "п/п № 512 от 25.11.2026"
    assert db.get(Order, paid.order_id).status == "paid"
    state = state_of(db, company)
    assert state.is_paid and state.plan.code == "users-12"
    upd = db.scalars(sa.select(Upd).where(Upd.invoice_id == invoice.id)).one()
    assert upd.status == "formed" and upd.pdf_file_id and upd.xml_file_id  # exactly as an imported payment
    [record] = audit(db, "support.invoice_marked_paid", company.id)
    assert record.before["status"] == "issued" and record.after["status"] == "paid"
    assert record.after["reference"] == "п/п № 512 от 25.11.2026" and record.reason == REASON
    assert record.actor_user_id == staff.id
    assert len(audit(db, "documents.invoice_paid", company.id)) == 1


def test_marking_a_paid_invoice_paid_again_is_refused(staff_client, db, company, invoice, audit):
    post(staff_client, f"/support/invoices/{invoice.id}/pay", pay_form())
    again = post(staff_client, f"/support/invoices/{invoice.id}/pay", pay_form(bank_reference="п/п № 600"))
    assert again.status_code == 409
    assert "уже оплачен (п/п № 512 от 25.11.2026)" in again.get_data(as_text=True)
    assert len(audit(db, "support.invoice_marked_paid")) == 1
    assert len(audit(db, "documents.invoice_paid")) == 1
    assert db.scalar(sa.select(sa.func.count()).select_from(Upd)) == 1


def test_mark_paid_refuses_a_future_date_and_missing_confirmation(staff_client, db, invoice, audit):
    resp = post(staff_client, f"/support/invoices/{invoice.id}/pay", pay_form(paid_on="2099-01-01"))
    assert resp.status_code == 400 and "не может быть в будущем" in resp.get_data(as_text=True)
    form = pay_form()
    del form["confirm"]
    assert post(staff_client, f"/support/invoices/{invoice.id}/pay", form).status_code == 400
    resp = post(staff_client, f"/support/invoices/{invoice.id}/pay", pay_form(paid_on="31.02.2026"))
    assert resp.status_code == 400 and "ДД.ММ.ГГГГ" in resp.get_data(as_text=True)
    db.expire_all()
    assert db.get(Invoice, invoice.id).status == "issued"
    assert audit(db, "support.invoice_marked_paid") == []


def test_cancel_an_unpaid_invoice(staff_client, db, company, invoice, audit):
    resp = post(staff_client, f"/support/invoices/{invoice.id}/cancel", confirmed(reason="Выставлен по ошибке"))
    assert resp.status_code == 302
    db.expire_all()
    canceled = db.get(Invoice, invoice.id)
    assert canceled.status == "canceled" and canceled.cancel_reason == "Выставлен по ошибке"
    assert db.get(Order, canceled.order_id).status == "canceled"
    [record] = audit(db, "support.invoice_canceled", company.id)
    assert (record.before["status"], record.after["status"], record.reason) == (
        "issued",
        "canceled",
        "Выставлен по ошибке",
    )
    # Then it can be neither paid nor canceled again.
    assert post(staff_client, f"/support/invoices/{invoice.id}/pay", pay_form()).status_code == 409
    assert post(staff_client, f"/support/invoices/{invoice.id}/cancel", confirmed()).status_code == 409


def test_a_paid_invoice_cannot_be_canceled(staff_client, db, invoice, audit):
    post(staff_client, f"/support/invoices/{invoice.id}/pay", pay_form())
    resp = post(staff_client, f"/support/invoices/{invoice.id}/cancel", confirmed())
    assert resp.status_code == 409 and "уже оплачен" in resp.get_data(as_text=True)
    assert audit(db, "support.invoice_canceled") == []


def test_paying_an_invoice_whose_order_was_canceled_is_a_conflict(staff_client, db, invoice, audit):
    # The order is closed behind the still-issued invoice: documents refuse, and the staff member's page is out of
    # date (409), not their form (400). The status comes from the refusal's type, not from its wording.
    db.get(Order, invoice.order_id).status = "canceled"
    db.commit()
    resp = post(staff_client, f"/support/invoices/{invoice.id}/pay", pay_form())
    assert resp.status_code == 409 and "не может быть оплачен" in resp.get_data(as_text=True)
    db.expire_all()
    assert db.get(Invoice, invoice.id).status == "issued"
    assert audit(db, "support.invoice_marked_paid") == []


# --- bank statements --------------------------------------------------------------------------------------


def upload(client, data: bytes):
    return post(
        client,
        "/support/statements",
        {"statement": (io.BytesIO(data), "выписка.txt")},
        content_type="multipart/form-data",
        follow_redirects=True,  # to the import's task run: done by now, the tests run tasks where they are queued
    )


@pytest.fixture
def short_payment(staff_client, db, invoice):
    """A payment 1 000 ₽ short of the invoice that names no invoice: the import keeps it for support."""
    data = statement(payment("77", invoice.amount - 100_000, "Оплата лицензии на мессенджер"))
    page = text_of(upload(staff_client, data))
    assert "не сопоставлено: 1" in page and "по ИНН и сумме счёт однозначно не найден" in page
    return db.scalars(sa.select(StatementLine)).one()


def test_statement_upload_pays_exact_payments_and_audits_the_upload(staff_client, db, company, invoice, audit):
    resp = upload(staff_client, statement(payment("76", invoice.amount, f"Оплата счёта № {invoice.number}")))
    assert resp.status_code == 200 and "сопоставлено: 1, не сопоставлено: 0" in resp.get_data(as_text=True)
    assert state_of(db, company).is_paid
    [record] = audit(db, "support.statement_imported")
    assert record.after["matched"] == 1 and record.after["file"] == "выписка.txt"


def test_a_broken_statement_changes_nothing(staff_client, db):
    resp = upload(staff_client, b"this is not a statement")
    assert resp.status_code == 400 and "Файл не принят" in resp.get_data(as_text=True)
    assert db.scalars(sa.select(StatementLine)).all() == []


def test_linking_a_different_amount_needs_explicit_confirmation(
    staff_client, db, company, invoice, short_payment, audit
):
    page = staff_client.get(f"/support/statements/lines/{short_payment.id}").get_data(as_text=True)
    assert f"№ {invoice.number}" in page and "недоплата 1\u00a0000,00\u00a0₽" in page

    resp = post(
        staff_client, f"/support/statements/lines/{short_payment.id}/link", confirmed(invoice_id=str(invoice.id))
    )
    assert resp.status_code == 409
    text = resp.get_data(as_text=True)
    assert "меньше суммы к оплате по счёту" in text and "на 1\u00a0000,00\u00a0₽" in text
    db.expire_all()
    assert db.get(Invoice, invoice.id).status == "issued"
    assert db.get(StatementLine, short_payment.id).status == LineStatus.UNMATCHED
    assert audit(db, "support.payment_linked") == []

    resp = post(
        staff_client,
        f"/support/statements/lines/{short_payment.id}/link",
        confirmed(invoice_id=str(invoice.id), confirm_amount="y"),
    )
    assert resp.status_code == 302
    db.expire_all()
    # A short payment pays part of the invoice: 1 000 ₽ is still due, and the plan waits for it.
    assert db.get(Invoice, invoice.id).status == "issued"
    assert ledger.invoice_remaining(db, db.get(Invoice, invoice.id)) == 100_000
    assert db.get(StatementLine, short_payment.id).status == LineStatus.LINKED
    assert not state_of(db, company).is_paid
    [record] = audit(db, "support.payment_linked", company.id)
    assert record.after["amount_mismatch_confirmed"] is True and record.after["invoice"] == invoice.number
    assert record.after["payment_amount"] == invoice.amount - 100_000 and record.reason == REASON


def test_link_by_typed_invoice_number(staff_client, db, invoice, short_payment):
    resp = post(
        staff_client,
        f"/support/statements/lines/{short_payment.id}/link",
        confirmed(invoice_number=f"№ {invoice.number}", confirm_amount="y"),
    )
    assert resp.status_code == 302
    db.expire_all()
    assert ledger.invoice_paid_amount(db, invoice.id) == invoice.amount - 100_000


def test_mark_a_payment_as_not_ours(staff_client, db, invoice, short_payment, audit):
    resp = post(
        staff_client,
        f"/support/statements/lines/{short_payment.id}/dismiss",
        {"reason": "Ошибочный платёж, вернуть", "confirm": "y"},
    )
    assert resp.status_code == 302
    db.expire_all()
    line = db.get(StatementLine, short_payment.id)
    assert line.status == LineStatus.DISMISSED and line.resolution_note == "Ошибочный платёж, вернуть"
    assert db.get(Invoice, invoice.id).status == "issued"
    [record] = audit(db, "support.payment_dismissed")
    assert record.after["status"] == "dismissed" and record.reason == "Ошибочный платёж, вернуть"
    # Resolved once: neither action applies again.
    again = post(staff_client, f"/support/statements/lines/{short_payment.id}/dismiss", confirmed())
    assert again.status_code == 409 and "уже разобран" in again.get_data(as_text=True)


# --- resending documents ----------------------------------------------------------------------------------


def test_resend_the_invoice_and_the_upd(staff_client, db, company, invoice, mailbox, audit):
    resp = post(staff_client, f"/support/documents/invoice/{invoice.id}/resend", confirmed())
    assert resp.status_code == 302
    [letter] = mailbox.sent
    assert letter["To"] == "buh@romashka.example.ru" and f"№ {invoice.number}" in letter["Subject"]
    msg = message_from_bytes(bytes(letter), policy=policy.default)
    [pdf] = list(msg.iter_attachments())
    assert pdf.get_content() == f"%PDF-invoice {invoice.number}".encode()

    post(staff_client, f"/support/invoices/{invoice.id}/pay", pay_form())
    upd = db.scalars(sa.select(Upd).where(Upd.invoice_id == invoice.id)).one()
    assert post(staff_client, f"/support/documents/upd/{upd.id}/resend", confirmed()).status_code == 302
    msg = message_from_bytes(bytes(mailbox.sent[-1]), policy=policy.default)
    types = sorted(a.get_content_type() for a in msg.iter_attachments())
    assert len(types) == 2 and types[0] == "application/pdf" and "xml" in types[1]

    records = audit(db, "support.document_resent", company.id)
    assert [r.after["to"] for r in records] == ["buh@romashka.example.ru"] * 2
    assert all(r.reason == REASON for r in records)


def test_resend_needs_confirmation_and_a_failed_send_is_not_recorded(staff_client, db, invoice, mailbox, audit):
    assert post(staff_client, f"/support/documents/invoice/{invoice.id}/resend", {"reason": REASON}).status_code == 400

    def broken(_message):
        from portal.support.email import EmailError

        raise EmailError("Не удалось отправить письмо через smtp.example.ru:587: timed out.")

    mailbox.send = broken
    resp = post(staff_client, f"/support/documents/invoice/{invoice.id}/resend", confirmed())
    assert resp.status_code == 400 and "Не удалось отправить письмо" in resp.get_data(as_text=True)
    assert audit(db, "support.document_resent") == []


# --- requests ---------------------------------------------------------------------------------------------


@pytest.fixture
def large_request(db, company):
    req = SupportRequest(account_id=company.id, kind="large_plan", users_expected=2000, status="open", created_at=NOW)
    db.add(req)
    db.commit()
    return req


def test_take_and_reject_a_request_with_a_note(staff_client, db, company, large_request, audit, staff):
    assert post(staff_client, f"/support/requests/{large_request.id}/take").status_code == 302
    db.expire_all()
    assert db.get(SupportRequest, large_request.id).status == "in_progress"

    missing = post(staff_client, f"/support/requests/{large_request.id}/resolve", {"outcome": "rejected"})
    assert missing.status_code == 400 and "Напишите ответ" in missing.get_data(as_text=True)

    note = "Для 2000 пользователей предложим тариф после звонка"
    resp = post(staff_client, f"/support/requests/{large_request.id}/resolve", {"outcome": "rejected", "note": note})
    assert resp.status_code == 302
    db.expire_all()
    row = db.get(SupportRequest, large_request.id)
    assert (row.status, row.staff_note, row.resolved_by_user_id) == ("rejected", note, staff.id)
    [record] = audit(db, "support.request_resolved", company.id)
    assert (record.before["status"], record.after["status"], record.reason) == ("in_progress", "rejected", note)


def test_custom_plan_from_a_request_prefills_and_closes_it(staff_client, db, large_request):
    page = staff_client.get(f"/support/accounts/{large_request.account_id}/custom-plan?request={large_request.id}")
    assert 'value="2000"' in page.get_data(as_text=True)
    resp = post(
        staff_client,
        f"/support/accounts/{large_request.account_id}/custom-plan",
        confirmed(seats="2000", storage="4", storage_unit="TB", monthly_price="59990", request_id=large_request.id),
    )
    assert resp.status_code == 302
    db.expire_all()
    row = db.get(SupportRequest, large_request.id)
    assert row.status == "done" and "59\u00a0990,00\u00a0₽" in row.staff_note


def test_a_closed_request_cannot_be_closed_again(staff_client, db, large_request):
    post(staff_client, f"/support/requests/{large_request.id}/resolve", {"outcome": "done", "note": "Готово"})
    again = post(staff_client, f"/support/requests/{large_request.id}/resolve", {"outcome": "rejected", "note": "Нет"})
    assert again.status_code == 400 and "уже закрыта" in again.get_data(as_text=True)
    db.expire_all()
    assert db.get(SupportRequest, large_request.id).status == "done"
