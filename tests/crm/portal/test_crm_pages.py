"""The owner's CRM page: sync now, the journal, outbox problems with their reasons and fixes, people waiting."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

import sqlalchemy as sa

from portal.seats.crm.models import CrmOutbox, CrmSyncRun
from tests.conftest import post
from tests.crm.portal.conftest import NOW, Crm

OWNER = "+79990000001"


def page(client: Any, path: str = "/crm") -> str:
    resp = client.get(path)
    assert resp.status_code == 200
    return resp.get_data(as_text=True)


def text(html: str) -> str:
    """The page as a person reads it: tags and repeated blanks gone."""
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html))


def test_sync_now_imports_and_the_journal_says_what_changed_and_why(crm: Crm, client: Any, auth: Any) -> None:
    crm.emulator.add_user("Зоя Белова", "zoya@romashka.example", phone="+79165551234")
    crm.emulator.add_user("Юрий Без Телефона", "yuri@romashka.example")
    auth.login(OWNER)
    before = text(page(client))
    assert "ООО «Ромашка»" in before and "ещё не выполнялась" in before

    resp = post(client, "/crm/sync", follow_redirects=True)

    shown = text(resp.get_data(as_text=True))
    assert "Синхронизация выполнена. Создано пользователей: 1; новых отделов: 1; не добавлены: 1." in shown
    assert "Зоя Белова" in shown and "Первое подключение: импортирован активный пользователь CRM (платный)" in shown
    assert "Не добавлены в мессенджер: 1" in shown and "Юрий Без Телефона" in shown
    assert "Журнал синхронизаций" in shown and "Вручную" in shown
    assert crm.seats() == 2


def test_the_seat_count_and_limits_api_follow_the_synced_directory_at_once(crm: Crm, client: Any, auth: Any) -> None:
    for i in range(6):
        crm.emulator.add_user(f"Сотрудник {i}", f"u{i}@romashka.example", phone=f"+7916777000{i}")
    auth.login(OWNER)

    post(client, "/crm/sync")

    limits = client.get("/api/v1/limits").get_json()
    assert limits["seats"]["used"] == 7 and limits["over_limit"] is True
    assert "Превышен тариф" in page(client, "/crm")  # the over-limit warning, on this very page


def test_a_messenger_user_without_email_is_shown_with_the_reason_and_fixed_in_place(
    crm: Crm, client: Any, auth: Any
) -> None:
    crm.app.config["CRM_OUTBOX_DELIVERY"] = "sync"
    auth.login(OWNER)
    # On the team page the e-mail is asked for at once, saying why (issue #15)…
    resp = post(client, "/team/users", {"phone": "+79161230002", "name": "Глеб Васильев", "role": "member"})
    assert resp.status_code == 400
    assert "без почты пользователя в ней не создать" in resp.get_data(as_text=True)
    assert crm.outbox() == []
    # …but the messenger may add someone without one; the CRM needs an e-mail nobody gave.
    token = crm.app.config["MESSENGER_API_TOKEN"]
    resp = client.post(
        f"/api/v1/accounts/{crm.account.id}/users",
        json={"phone": "+79161230002", "name": "Глеб Васильев"},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert resp.status_code in (200, 201), resp.get_data(as_text=True)

    shown = text(page(client))

    assert "Изменения для CRM" in shown and "Глеб Васильев" in shown
    assert "Создать в CRM" in shown and "Отклонено" in shown
    assert "Нужен e-mail, чтобы создать пользователя в CRM" in shown
    [item] = crm.outbox()

    done = post(client, f"/crm/outbox/{item.id}/email", {"email": "gleb@romashka.example"}, follow_redirects=True)

    assert "Почта сохранена" in done.get_data(as_text=True)
    created = [u for u in crm.emulator.users() if u.email == "gleb@romashka.example"]
    assert len(created) == 1 and created[0].is_free
    assert [o.status for o in crm.outbox()] == ["done"]
    assert "Изменения для CRM" not in page(client)


def test_the_team_page_creates_the_user_in_the_crm_right_after_saving(crm: Crm, client: Any, auth: Any) -> None:
    crm.app.config["CRM_OUTBOX_DELIVERY"] = "sync"
    auth.login(OWNER)

    post(
        client,
        "/team/users",
        {"phone": "+79161230003", "name": "Дарья Новикова", "role": "member", "email": "darya@romashka.example"},
    )

    [created] = crm.emulator.users()
    assert (created.name, created.email, created.is_free) == ("Дарья Новикова", "darya@romashka.example", True)
    member = crm.member_by_crm(created.id)
    assert member is not None and member.user.phone == "+79161230003"


def test_failing_items_show_their_reason_and_can_be_retried(crm: Crm, client: Any, auth: Any) -> None:
    crm.emulator.down = True
    crm.add_in_messenger("+79161230001", "Вера Попова", email="vera@romashka.example")
    for attempt in range(8):
        crm.deliver(now=NOW + timedelta(hours=attempt * 2), max_retries=0)
    auth.login(OWNER)

    shown = text(page(client))
    assert "Не удалось" in shown and "CRM временно недоступна" in shown and "попыток: 8" in shown
    [item] = crm.outbox()
    assert item.status == "failed"

    crm.emulator.down = False
    crm.app.config["CRM_OUTBOX_DELIVERY"] = "sync"
    resp = post(client, f"/crm/outbox/{item.id}/retry", follow_redirects=True)

    assert "Задание снова в очереди" in resp.get_data(as_text=True)
    assert [o.status for o in crm.outbox()] == ["done"]
    assert [u.name for u in crm.emulator.users()] == ["Вера Попова"]


def test_the_owner_can_cancel_an_operation(crm: Crm, client: Any, auth: Any) -> None:
    crm.add_in_messenger("+79161230004", "Егор Морозов")
    crm.deliver()
    [item] = crm.outbox()
    auth.login(OWNER)

    post(client, f"/crm/outbox/{item.id}/cancel")

    assert [o.status for o in crm.outbox()] == ["canceled"]
    assert crm.deliver(now=NOW + timedelta(days=1)).attempted == 0


def test_a_crm_user_without_phone_is_added_once_the_owner_gives_one(crm: Crm, client: Any, auth: Any) -> None:
    yuri = crm.emulator.add_user("Юрий Соколов", "yuri@romashka.example")
    crm.sync()
    auth.login(OWNER)
    assert "В CRM не указан телефон" in text(page(client))

    bad = post(client, f"/crm/pending/{yuri.id}/phone", {"phone": "123"}, follow_redirects=True)
    assert "Такого номера не существует" in bad.get_data(as_text=True) and crm.seats() == 1

    resp = post(client, f"/crm/pending/{yuri.id}/phone", {"phone": "8 916 444-55-66"}, follow_redirects=True)

    assert "Юрий Соколов добавлен(а) в мессенджер" in resp.get_data(as_text=True)
    member = crm.member_by_crm(yuri.id)
    assert member.is_active and member.user.phone == "+79164445566" and member.source == "crm"
    assert crm.department_names_of(member) == ["Отдел продаж"]
    assert "Не добавлены в мессенджер" not in page(client)
    assert crm.sync(now=NOW + timedelta(hours=1)).changes == 0
    assert crm.outbox() == []  # came from the CRM: nothing to send back


def test_people_removed_in_the_crm_are_listed_as_still_active(crm: Crm, client: Any, auth: Any) -> None:
    leaver = crm.emulator.add_user("Жанна Волкова", "zhanna@romashka.example", phone="+79161234567")
    crm.sync()
    crm.emulator.remove_user(leaver.id)
    crm.sync(now=NOW + timedelta(days=1))
    auth.login(OWNER)

    shown = text(page(client))

    assert "Удалены в CRM, активны в мессенджере: 1" in shown
    assert "Жанна Волкова — удалён в CRM 26.11.2026" in shown


def test_a_failed_run_explains_itself_on_the_page(crm: Crm, client: Any, auth: Any) -> None:
    crm.emulator.seed(3, seed=1)
    crm.emulator.malformed_next(1, shape=True)
    auth.login(OWNER)

    resp = post(client, "/crm/sync", follow_redirects=True)

    shown = text(resp.get_data(as_text=True))
    assert "Синхронизация не выполнена: CRM вернула ответ без данных (_embedded)" in shown
    assert "в мессенджере ничего не изменено" in shown and "Остановлена" in shown
    assert crm.seats() == 1


def test_run_pages_belong_to_their_account(crm: Crm, client: Any, auth: Any, make_account: Any, db: Any) -> None:
    crm.emulator.seed(2, seed=1)
    crm.sync()
    run = crm.runs()[-1]
    other = make_account(name="ИП Соколов", owner_phone="+79990000003")
    db.add(CrmSyncRun(account_id=other.id, trigger="cron", started_at=NOW, status="ok", counts={}))
    db.commit()
    foreign = db.scalars(sa.select(CrmSyncRun).where(CrmSyncRun.account_id == other.id)).one()
    auth.login(OWNER)

    assert "Что изменилось и почему" in page(client, f"/crm/runs/{run.id}")
    assert client.get(f"/crm/runs/{foreign.id}").status_code == 404
    foreign_item = CrmOutbox(
        account_id=other.id, membership_id=1, operation="create_user", payload={}, next_attempt_at=NOW
    )
    db.add(foreign_item)
    db.commit()
    assert post(client, f"/crm/outbox/{foreign_item.id}/retry").status_code == 404
