"""The CRM emulator itself: admin page, state shared through a file, seeding, its own HTTP rules."""

from __future__ import annotations

import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import requests

from devtools.crm_emulator import Emulator, running_emulator
from portal.seats.crm import AmoCrmClient, MemoryTokenStore, generate_password

CYRILLIC = re.compile(r"^[А-ЯЁ][а-яё]+ [А-ЯЁ][а-яё]+$")


def test_seed_makes_plausible_people() -> None:
    emulator = Emulator()

    users = emulator.seed(200)

    assert [u for u in users if u.is_admin] == [users[0]]
    assert 20 < sum(u.is_free for u in users) < 80
    assert all(CYRILLIC.match(u.name) for u in users)
    assert len({u.email.casefold() for u in users}) == 200
    assert {g.name for g in emulator.groups()} == {"Отдел продаж", "Бухгалтерия", "Техподдержка", "Логистика"}
    assert len({u.group_id for u in users}) == 4


def test_admin_page_changes_what_the_api_returns(crm_url: str, client: AmoCrmClient, emulator: Emulator) -> None:
    emulator.seed(2)
    with requests.Session() as browser:
        page = browser.get(f"{crm_url}/_admin", timeout=5)
        assert page.status_code == 200
        assert "Добавить пользователя" in page.text and "Переименовать" in page.text

        added = browser.post(
            f"{crm_url}/_admin/add_user",
            data={"name": "Зоя Космодемьянская", "email": "zoya@romashka.example", "group_id": "0", "is_free": "1"},
            timeout=5,
        )
        assert added.status_code == 200 and "Пользователь Зоя Космодемьянская добавлен" in added.text
        browser.post(f"{crm_url}/_admin/rename_group", data={"group_id": "0", "name": "Продажи"}, timeout=5)
        refused = browser.post(
            f"{crm_url}/_admin/set_active", data={"user_id": str(emulator.users()[0].id), "active": "0"}, timeout=5
        )

    assert refused.status_code == 400 and "Нельзя отключить администратора аккаунта" in refused.text
    zoya = next(u for u in client.list_users() if u.email == "zoya@romashka.example")
    assert zoya.is_free and zoya.is_active
    assert client.list_groups()[0].name == "Продажи"


def test_api_refuses_more_than_ten_users_at_once(crm_url: str, emulator: Emulator) -> None:
    token = emulator.issue_tokens().access_token
    body = [{"name": f"U{i}", "email": f"u{i}@x.example", "password": generate_password()} for i in range(11)]

    answer = requests.post(
        f"{crm_url}/api/v4/users", json=body, headers={"Authorization": f"Bearer {token}"}, timeout=5
    )

    assert answer.status_code == 400
    assert answer.headers["Content-Type"].startswith("application/problem+json")
    assert "не больше 10" in answer.json()["detail"]
    assert emulator.users() == []


def test_access_tokens_expire(crm_url: str) -> None:
    now = [1_000_000.0]
    emulator = Emulator(token_ttl=60, now=lambda: now[0])
    with running_emulator(emulator) as (url, _):
        headers = {"Authorization": f"Bearer {emulator.issue_tokens().access_token}"}
        assert requests.get(f"{url}/api/v4/account", headers=headers, timeout=5).status_code == 200
        now[0] += 61
        assert requests.get(f"{url}/api/v4/account", headers=headers, timeout=5).status_code == 401
        assert requests.get(f"{url}/api/v4/account", timeout=5).status_code == 401


def test_state_file_is_shared_between_processes_views(tmp_path: Path) -> None:
    path = tmp_path / "crm.json"
    server_side = Emulator(state_file=path)
    cli_side = Emulator(state_file=path)
    server_side.seed(5)

    cli_side.add_user("Иван Иванов", "ivan@romashka.example")
    tokens = cli_side.issue_tokens()

    assert len(server_side.users()) == 6
    with running_emulator(server_side) as (url, _):
        assert len(AmoCrmClient(url, MemoryTokenStore(tokens)).list_users()) == 6
    assert tokens.access_token not in path.read_text(encoding="utf-8"), "only token hashes are stored"


def test_command_line_serves_a_seeded_account(tmp_path: Path) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    state = tmp_path / "crm.json"
    process = subprocess.Popen(
        [sys.executable, "-m", "devtools.crm_emulator", "--port", str(port), "--state", str(state), "--seed", "12"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert process.stdout is not None
        banner = process.stdout.readline()
        assert f"http://127.0.0.1:{port}" in banner
        tokens = Emulator(state_file=state).issue_tokens()
        deadline = time.monotonic() + 10
        while True:
            try:
                users = AmoCrmClient(f"http://127.0.0.1:{port}", MemoryTokenStore(tokens), max_retries=0).list_users()
                break
            except Exception:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        assert len(users) == 12
    finally:
        process.terminate()
        process.wait(timeout=10)
        if process.stdout is not None:
            process.stdout.close()


def test_generated_passwords_are_strong() -> None:
    passwords = [generate_password() for _ in range(200)]

    assert len(set(passwords)) == 200
    for password in passwords:
        assert len(password) >= 16
        assert re.search(r"[a-z]", password) and re.search(r"[A-Z]", password)
        assert re.search(r"\d", password) and re.search(r"[^A-Za-z0-9]", password)
