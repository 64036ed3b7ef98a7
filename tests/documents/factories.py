"""Helpers for the documents tests: requisites, invoice orders, issued invoices and bank statements."""

from __future__ import annotations

import itertools
from datetime import UTC, date, datetime
from typing import Any

from flask import Flask

from portal.accounts.models import Account
from portal.billing.models import Order
from portal.billing.orders import create_order
from portal.documents.invoices import issue_invoice
from portal.documents.models import Invoice
from portal.documents.service import save_requisites
from portal.payments.statement import build_statement

# 25.11.2026 12:00 in Moscow.
NOW = datetime(2026, 11, 25, 9, 0, tzinfo=UTC)
SELLER_ACCOUNT = "40702810303800012345"  # the default SELLER_ACCOUNT of the config

ORG = {
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
}
IP = {
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

_keys = itertools.count(1)


def give_requisites(db: Any, account: Account, data: dict[str, Any] = ORG) -> None:
    save_requisites(db, actor=None, account_id=account.id, data=data, now=NOW)
    db.commit()


def make_order(db: Any, account: Account, *, plan: str = "users-12", months: int = 9, now: datetime = NOW) -> Order:
    order = create_order(
        db,
        actor=None,
        account_id=account.id,
        plan_code=plan,
        months=months,
        payer_type="invoice",
        license_version="2026-01",
        idempotency_key=f"test-order-{next(_keys):06d}",
        now=now,
    )
    db.commit()
    return order


def issue(app: Flask, db: Any, account: Account, *, now: datetime = NOW, **order_kw: Any) -> Invoice:
    order = make_order(db, account, now=now, **order_kw)
    with app.app_context():
        invoice = issue_invoice(db, order, actor=None, now=now, config=app.config)
        db.commit()
    return invoice


def payment(
    number: str,
    amount: int,
    purpose: str,
    *,
    payer_inn: str = ORG["inn"],
    payer_name: str = 'ООО "РОМАШКА"',
    payer_account: str = ORG["account_number"],
    day: date = date(2026, 11, 26),
    to_account: str = SELLER_ACCOUNT,
) -> dict[str, Any]:
    return {
        "Номер": number,
        "Дата": day,
        "Сумма": amount,
        "ПлательщикСчет": payer_account,
        "ДатаСписано": day,
        "Плательщик": f"ИНН {payer_inn} {payer_name}",
        "ПлательщикИНН": payer_inn,
        "Плательщик1": payer_name,
        "ПлательщикКПП": ORG["kpp"],
        "ПолучательСчет": to_account,
        "ДатаПоступило": day,
        "Получатель": "ООО «Мессенджер Плюс»",
        "ПолучательИНН": "7712345671",
        "ВидОплаты": "01",
        "Очередность": 5,
        "НазначениеПлатежа": purpose,
    }


def statement(*documents: dict[str, Any], encoding: str = "Windows") -> bytes:
    header = {
        "Отправитель": "Бухгалтерия предприятия, редакция 3.0",
        "Получатель": "",
        "ДатаСоздания": date(2026, 11, 27),
        "ДатаНачала": date(2026, 11, 26),
        "ДатаКонца": date(2026, 11, 26),
        "РасчСчет": SELLER_ACCOUNT,
    }
    return build_statement(header, documents, encoding)
