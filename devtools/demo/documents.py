"""Demo data: ООО «Ромашка» has valid requisites, so an invoice can be issued at once; ИП Соколов has none yet."""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import urlsplit

from devtools.edo_emulator import EdoEmulator, serve
from portal.db import utcnow
from portal.documents.seller import get_seller
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


def start(app: Any) -> Any:
    """`make run`: the local ЭДО emulator on EDO_EMULATOR_URL's port, its buyer's page at its address."""
    if app.config.get("EDO_BACKEND") != "emulator":
        return None
    parts = urlsplit(app.config["EDO_EMULATOR_URL"])
    try:
        server = serve(EdoEmulator(get_seller(app.config).edo_id), parts.hostname or "127.0.0.1", parts.port or 80)
    except (OSError, SystemExit):
        logging.getLogger(__name__).warning("ЭДО emulator not started: %s is busy", app.config["EDO_EMULATOR_URL"])
        return None
    print(f"  Эмулятор ЭДО: {app.config['EDO_EMULATOR_URL']} (входящие покупателя: подписать или отклонить)")
    return server
