"""Demo data for the console: ООО «Ромашка» asks for a trial month and has an invoice whose payment came short,
so the queue and the statement matching have something to show."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import sqlalchemy as sa
from flask import current_app

from portal.billing.orders import create_order
from portal.billing.subscriptions import list_owners
from portal.db import utcnow
from portal.documents.invoices import issue_invoice
from portal.documents.service import get_requisites
from portal.payments.bank import import_statement
from portal.payments.statement import build_statement
from portal.support.models import RequestKind, RequestStatus, SupportRequest

DEMO_ORDER_KEY = "demo-support-invoice-users-24"
SHORT_BY = 500_00  # the customer's transfer is 500 ₽ short: it waits for support


def seed(db: Any, demo: dict[str, Any]) -> None:
    account = demo["big"]
    exists = db.scalar(sa.select(SupportRequest.id).where(SupportRequest.account_id == account.id))
    if exists is None:
        owner = list_owners(db, account.id)[0]
        db.add(
            SupportRequest(
                account_id=account.id,
                kind=RequestKind.TRIAL.value,
                plan_code="users-24",
                comment="Хотим проверить тариф на 24 пользователя перед оплатой. Удобно звонить после 15:00.",
                status=RequestStatus.OPEN.value,
                created_by_user_id=owner.id,
                created_at=utcnow() - timedelta(hours=3),
            )
        )
        db.commit()
    _short_payment(db, account)


def _short_payment(db: Any, account: Any) -> None:
    """An invoice for users-24 (6 months) and a bank statement whose transfer for it is short and names no invoice."""
    requisites = get_requisites(db, account.id)
    if requisites is None:
        return
    now = utcnow() - timedelta(days=2)
    order = create_order(
        db,
        actor=None,
        account_id=account.id,
        plan_code="users-24",
        months=6,
        payer_type="invoice",
        license_version=current_app.config["LICENSE_VERSION"],
        idempotency_key=DEMO_ORDER_KEY,
        now=now,
    )
    if order.status != "pending":
        return
    invoice = issue_invoice(db, order, actor=None, now=now, config=current_app.config)
    db.commit()
    day = (now + timedelta(days=1)).date()
    seller_account = current_app.config["SELLER_ACCOUNT"]
    doc = {
        "Номер": "512",
        "Дата": day,
        "Сумма": invoice.amount - SHORT_BY,
        "ПлательщикСчет": requisites.account_number or "40702810800000012345",
        "ДатаСписано": day,
        "Плательщик": f"ИНН {requisites.inn} {requisites.name}",
        "ПлательщикИНН": requisites.inn,
        "Плательщик1": requisites.name,
        "ПлательщикКПП": requisites.kpp or "",
        "ПолучательСчет": seller_account,
        "ДатаПоступило": day,
        "Получатель": current_app.config["SELLER_NAME"],
        "ПолучательИНН": current_app.config["SELLER_INN"],
        "ВидОплаты": "01",
        "Очередность": 5,
        # No invoice number and 1 000 ₽ short: the import cannot tell what it pays, so staff have one to link.
        "НазначениеПлатежа": "Оплата лицензии на корпоративный мессенджер. Без налога (НДС)",
    }
    header = {
        "Отправитель": "Бухгалтерия предприятия, редакция 3.0",
        "Получатель": "",
        "ДатаСоздания": day,
        "ДатаНачала": day,
        "ДатаКонца": day,
        "РасчСчет": seller_account,
    }
    import_statement(
        db, build_statement(header, [doc], "Windows"), file_name="demo-выписка.txt", actor=None, now=utcnow()
    )
