"""A populated portal for the security and bad-input tests: the demo companies plus a stranger, each with objects.

Every kind of object a URL can name (orders, invoices, УПД, files, CRM runs and outbox items, support requests,
statement lines, team members) exists twice: once in ООО «Ромашка» (the people under test) and once in another
account, so a test can ask for its own object and for somebody else's.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient

from devtools.demo import seed_demo_data
from portal.accounts.models import Account, Membership, MembershipStatus, Role, Source, User
from portal.billing.models import SubscriptionPeriod
from portal.billing.orders import create_order
from portal.billing.settlement import apply_paid_order
from portal.db import utcnow
from portal.documents.corrections import form_pending_corrections
from portal.documents.invoices import issue_invoice
from portal.documents.models import EdoDocument, Invoice, Upd
from portal.documents.service import save_requisites
from portal.payments import attempts, ledger, refunds
from portal.payments.models import StatementLine
from portal.payments.providers import get_provider
from portal.payments.providers.base import Customer
from portal.payments.statement_lines import mark_invoice_paid
from portal.seats.crm.models import CrmOutbox, CrmSyncEntry, CrmSyncRun, CrmUserState
from portal.support.models import SupportRequest
from portal.tasks.models import TaskRun
from tests.conftest import RecordingSms, csrf_token

OWNER = "+79990000001"
ACCOUNTANT = "+79990000002"
MEMBER = "+79990000010"
STAFF = "+79990000099"
STRANGER = "+79990000050"  # owner of ООО «Чужие» — "another account's owner"
STRANGER_MEMBER = "+79990000051"

ROLES = ("visitor", "member", "accountant", "owner", "staff", "stranger")
INVITER = "+79990000071"
PHONES = {"member": MEMBER, "accountant": ACCOUNTANT, "owner": OWNER, "staff": STAFF, "stranger": STRANGER}

STRANGER_REQUISITES = {
    "kind": "ip",
    "name": "ИП Соколов Сергей Викторович",
    "inn": "500301234503",
    "kpp": "",
    "ogrn": "318508100000123",
    "address": "141400, Московская обл., г. Химки, ул. Ленина, д. 5, кв. 12",
    "email": "sokolov@example.ru",
    "bank_name": "",
    "bik": "",
    "account_number": "",
    "correspondent_account": "",
    "edo_id": "",
}


@dataclass
class Objects:
    """Ids of one account's objects, by the name of the URL parameter that names them."""

    account_id: int
    ids: dict[str, int] = field(default_factory=dict)


@dataclass
class World:
    app: Flask
    own: Objects  # ООО «Ромашка»: the member, accountant and owner under test belong here
    other: Objects  # ООО «Чужие»: the stranger's company
    sandbox_payment: str = ""
    sbp_payment: str = ""
    staff_ids: dict[str, int] = field(default_factory=dict)

    def client_as(self, role: str, sms: RecordingSms) -> FlaskClient:
        """A browser session of this role (signed in through the real SMS-code flow)."""
        client = self.app.test_client()
        if role == "visitor":
            return client
        phone = PHONES[role]
        token = csrf_token(client, "/login")
        resp = client.post("/login", data={"phone": phone, "csrf_token": token})
        assert resp.status_code == 302, resp.get_data(as_text=True)
        resp = client.post("/login/code", data={"code": sms.last_code(phone), "csrf_token": token})
        assert resp.status_code == 302, resp.get_data(as_text=True)
        return client


def _member(db: Any, account: Account, phone: str, name: str, role: Role) -> User:
    user = db.scalars(sa.select(User).where(User.phone == phone)).first()
    if user is None:
        user = User(phone=phone, name=name)
        db.add(user)
        db.flush()
    db.add(
        Membership(
            account_id=account.id,
            user_id=user.id,
            role=role.value,
            status=MembershipStatus.ACTIVE.value,
            source=Source.PORTAL.value,
            name=name,
            seen_at=user.created_at,
        )
    )
    db.flush()
    return user


def _order(db: Any, account_id: int, payer_type: str, key: str, now: datetime) -> Any:
    order = create_order(
        db,
        actor=None,
        account_id=account_id,
        plan_code="users-12",
        months=6,
        payer_type=payer_type,
        license_version="2026-01",
        idempotency_key=key,
        now=now,
    )
    db.commit()
    return order


def _populate(app: Flask, db: Any, account: Account, tag: str, now: datetime) -> Objects:
    objects = Objects(account.id)
    ids = objects.ids
    member = db.scalars(
        sa.select(Membership).where(Membership.account_id == account.id, Membership.role == Role.MEMBER.value)
    ).first()
    ids["user_id"] = member.user_id
    ids["order_id"] = _order(db, account.id, "card", f"world-{tag}-card", now).id
    with app.app_context():
        # An unpaid invoice, and a paid one with its УПД.
        open_order = _order(db, account.id, "invoice", f"world-{tag}-invoice", now)
        invoice = issue_invoice(db, open_order, actor=None, now=now, config=app.config)
        db.commit()
        paid_order = _order(db, account.id, "invoice", f"world-{tag}-paid", now)
        paid = issue_invoice(db, paid_order, actor=None, now=now, config=app.config)
        db.commit()
        mark_invoice_paid(
            db, paid.id, actor=None, bank_reference=f"п/п № 7{account.id} от 25.11.2026", paid_on=now.date(), now=now
        )
        # A card payment started at the sandbox (the return page and the retry button name its order).
        order = db.get(type(open_order), ids["order_id"])
        payment, _url = attempts.start_card_payment(
            db, order, None, provider=get_provider(app, "sandbox"), return_url="http://localhost/", now=now
        )
        # An СБП payment at the sandbox: what its «bank app» page (the scanned QR code) shows.
        objects.sbp_payment, _qr = get_provider(app, "sandbox").create_sbp_payment(  # type: ignore[attr-defined]
            order, "http://localhost/", f"world-{tag}-sbp", Customer(phone="+79990000001")
        )
    # Money on the balance: an overpayment flagged to staff, and part of it asked back.
    receipt, _ = ledger.record_receipt(
        db,
        account_id=account.id,
        method="bank",
        amount=10_000,
        received_on=now.date(),
        source_key=f"world:{tag}",
        reference=f"п/п № 8{account.id} от 25.11.2026",
        now=now,
    )
    ledger.flag(receipt, "Переплата 100,00 ₽ зачислена на баланс")
    (refund,) = refunds.request_refund(db, account.id, actor=None, now=now, amount=5_000)
    db.commit()
    ids["receipt_id"] = receipt.id
    ids["refund_id"] = refund.id
    ids["invoice_id"] = invoice.id
    ids["paid_invoice_id"] = paid.id
    upd = db.scalars(sa.select(Upd).where(Upd.invoice_id == paid.id)).one()
    ids["upd_id"] = upd.id
    # Part of the paid order's days given back: a УКД the accountant downloads.
    with app.app_context():
        done = refunds.refund_rights(
            db,
            paid.order_id,
            cut_on=now.date() + timedelta(days=60),
            amount=100,
            reason="Проверка доступа",
            actor=None,
            now=now,
            config=app.config,
        )
        db.commit()
        form_pending_corrections(db, now=now, config=app.config)
    ids["doc_id"] = done.ukd_id
    # A prepaid next period the owner may cancel before it starts.
    renewal = _order(db, account.id, "card", f"world-{tag}-renewal", now)
    apply_paid_order(db, renewal.id, now=now, reference="world")
    db.commit()
    ids["period_id"] = db.scalars(
        sa.select(SubscriptionPeriod.id).where(SubscriptionPeriod.order_id == renewal.id)
    ).one()
    rejected = EdoDocument(
        account_id=account.id,
        kind="upd",
        document_id=upd.id,
        number=upd.number,
        recipient_id="2BM-7728146350-772801001",
        status="rejected",
        reject_reason="Неверный адрес",
        created_at=now,
    )
    db.add(rejected)
    db.flush()
    ids["edo_id"] = rejected.id
    ids["file_id"] = db.get(Invoice, invoice.id).pdf_file_id
    ids["document_id"] = invoice.id
    ids["payment"] = payment.id
    objects.sandbox_payment = payment.provider_payment_id  # type: ignore[attr-defined]

    run = CrmSyncRun(account_id=account.id, trigger="manual", started_at=now, finished_at=now, status="ok", counts={})
    db.add(run)
    db.flush()
    db.add(CrmSyncEntry(run_id=run.id, kind="created", subject="Тест", message="создан"))
    ids["run_id"] = run.id
    task_run = TaskRun(
        kind="crm_sync",
        title="Синхронизация с CRM",
        account_id=account.id,
        status="failed",
        params={"trigger": "manual"},
        error="CRM не подключена.",
        created_at=now,
        heartbeat_at=now,
    )
    db.add(task_run)
    db.flush()
    ids["task_run_id"] = task_run.id
    item = CrmOutbox(
        account_id=account.id,
        membership_id=member.id,
        operation="create_user",
        payload={"name": "Тест"},
        status="failed",
        attempts=5,
        next_attempt_at=now,
        last_error="CRM временно недоступна",
    )
    db.add(item)
    crm_user = 900_000 + account.id
    db.add(
        CrmUserState(
            account_id=account.id, crm_user_id=crm_user, name="Без телефона", email=f"{tag}@example.ru", phone=None
        )
    )
    db.flush()
    ids["item_id"] = item.id
    ids["crm_user_id"] = crm_user
    # The demo may already hold the account's one open trial request.
    request = db.scalars(sa.select(SupportRequest).where(SupportRequest.account_id == account.id)).first()
    if request is None:
        request = SupportRequest(account_id=account.id, kind="trial", plan_code="users-24", created_at=now)
        db.add(request)
        db.flush()
    ids["request_id"] = request.id
    db.commit()
    return objects


def _statement_line(app: Flask, db: Any, now: datetime) -> int:
    """An unmatched bank payment for support to look at."""
    from portal.payments.bank import import_statement
    from portal.payments.statement import build_statement

    seller = app.config["SELLER_ACCOUNT"]
    header = {
        "Отправитель": "Бухгалтерия предприятия, редакция 3.0",
        "Получатель": "",
        "ДатаСоздания": date(2026, 11, 27),
        "ДатаНачала": date(2026, 11, 26),
        "ДатаКонца": date(2026, 11, 26),
        "РасчСчет": seller,
    }
    doc = {
        "Номер": "901",
        "Дата": date(2026, 11, 26),
        "Сумма": 100_00,
        "ПлательщикСчет": "40702810800000012345",
        "ДатаСписано": date(2026, 11, 26),
        "Плательщик": "ИНН 7728146350 ООО «Неизвестные»",
        "ПлательщикИНН": "7728146350",
        "Плательщик1": "ООО «Неизвестные»",
        "ПолучательСчет": seller,
        "ДатаПоступило": date(2026, 11, 26),
        "Получатель": app.config["SELLER_NAME"],
        "ПолучательИНН": app.config["SELLER_INN"],
        "ВидОплаты": "01",
        "Очередность": 5,
        "НазначениеПлатежа": "Оплата по договору 15 без НДС",
    }
    with app.app_context():
        import_statement(db, build_statement(header, [doc], "Windows"), file_name="w.txt", actor=None, now=now)
    return db.scalars(sa.select(StatementLine.id).where(StatementLine.doc_number == "901")).one()


def build_world(app: Flask, db: Any) -> World:
    """The demo data, a stranger's company, and objects of every kind in both; documents rendered by stubs."""
    now = utcnow()
    with app.app_context():
        demo = seed_demo_data(db)
    big = demo["big"]
    other = Account(name="ООО «Чужие»", created_at=now)
    db.add(other)
    db.flush()
    _member(db, other, STRANGER, "Чужой Владелец", Role.OWNER)
    _member(db, other, STRANGER_MEMBER, "Чужой Сотрудник", Role.MEMBER)
    # A company that added the demo owner and accountant (new in their switcher, listed first on their profile):
    # what the crawled «Покинуть» form leaves, so the forms tests leave it rather than the demo company.
    inviter = Account(name="ООО «Пригласившая»", created_at=now)
    db.add(inviter)
    db.flush()
    _member(db, inviter, INVITER, "Пригласивший Владелец", Role.OWNER)
    for phone in (OWNER, ACCOUNTANT):
        _member(db, inviter, phone, "Приглашённый", Role.MEMBER)
    db.execute(
        sa.update(Membership)
        .where(Membership.account_id == inviter.id, Membership.role == Role.MEMBER.value)
        .values(seen_at=None)
    )
    db.commit()
    save_requisites(db, actor=None, account_id=other.id, data=STRANGER_REQUISITES, now=now)
    db.commit()
    own = _populate(app, db, big, "own", now)
    foreign = _populate(app, db, other, "other", now)
    world = World(app=app, own=own, other=foreign)
    world.sandbox_payment = own.sandbox_payment  # type: ignore[attr-defined]
    world.sbp_payment = own.sbp_payment  # type: ignore[attr-defined]
    world.staff_ids["line_id"] = _statement_line(app, db, now + timedelta(minutes=1))
    return world


__all__ = ["ROLES", "PHONES", "World", "Objects", "build_world", "UTC"]
