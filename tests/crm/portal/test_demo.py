"""The demo: ООО «Ромашка» connected to a seeded local CRM, so «Синхронизировать сейчас» works out of the box."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

import requests

from devtools.crm_emulator import Emulator, running_emulator
from devtools.demo import seed_demo_data
from devtools.demo.crm import STATE_FILE, start
from portal.seats.crm.sync import get_connection
from tests.crm.portal.conftest import Crm


def test_seeded_demo_company_syncs_with_the_demo_crm(app: Any, db: Any) -> None:
    state = Path(app.instance_path) / STATE_FILE
    state.parent.mkdir(parents=True, exist_ok=True)
    with running_emulator(Emulator(state_file=state)) as (url, emulator):
        app.config["CRM_EMULATOR_URL"] = url
        with app.app_context():
            demo = seed_demo_data(db)
            seed_demo_data(db)  # idempotent: run twice, as `make run` does on every start

        crm = Crm(app, db, demo["big"], emulator, url)
        groups = {g.name for g in emulator.groups()}
        assert groups == {"Отдел продаж", "Бухгалтерия", "Склад"} and len(emulator.users()) == 15
        connection = get_connection(db, demo["big"].id)
        assert connection.is_connected and connection.crm_account_name == "ООО «Ромашка»"

        result = crm.sync()

    assert result.ok and result.first_import
    assert result.counts["linked"] == 3 and result.counts["created"] == 10 and result.counts["pending"] == 2
    assert crm.seats() == 9 + 10  # the demo company's nine people, none doubled, and ten from the CRM


def test_run_demo_serves_the_emulator_on_its_port(app: Any) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    app.config["CRM_EMULATOR_URL"] = f"http://127.0.0.1:{port}"

    server = start(app)
    try:
        page = requests.get(f"http://127.0.0.1:{port}/_admin", timeout=5)
        assert page.status_code == 200 and "Анна Смирнова" in page.text
        assert start(app) is None  # a second start finds the port busy and leaves the portal running
    finally:
        assert server is not None
        server.shutdown()
        server.server_close()
