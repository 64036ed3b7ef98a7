"""Demo data: ООО «Ромашка» has valid requisites, so an invoice can be issued at once; ИП Соколов has none yet."""

from __future__ import annotations

from typing import Any

from portal.db import utcnow
from portal.documents.service import get_requisites, save_requisites

ROMASHKA = {
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


def seed(db: Any, demo: dict[str, Any]) -> None:
    account = demo["big"]
    if get_requisites(db, account.id) is None:
        save_requisites(db, actor=None, account_id=account.id, data=ROMASHKA, now=utcnow())
