"""amoCRM as it really answers (issue #21): the default group as null, and the documented limits on adding users."""

from __future__ import annotations

import pytest
import requests

from devtools.crm_emulator import Emulator
from portal.seats.crm import AmoCrmClient, CrmBlocked, CrmRefused, NewCrmUser, generate_password
from portal.seats.crm.amocrm import amocrm_user_name
from portal.seats.crm.base import DEFAULT_GROUP_ID, CrmOperationForbidden


def api(crm_url: str, emulator: Emulator, method: str, path: str, body: object = None) -> requests.Response:
    token = emulator.issue_tokens().access_token
    return requests.request(
        method, f"{crm_url}{path}", json=body, headers={"Authorization": f"Bearer {token}"}, timeout=5
    )


def new_user(name: str, email: str, **rights: object) -> dict[str, object]:
    return {"name": name, "email": email, "password": generate_password(), "rights": {"is_free": True, **rights}}


# --- the emulator answers in amoCRM's shapes ----------------------------------------------------------------


def test_default_group_users_have_a_null_group_id_while_the_group_is_listed_as_0(
    crm_url: str, emulator: Emulator
) -> None:
    office = emulator.add_group("Офис")
    emulator.add_user("Анна Смирнова", "anna@romashka.example")  # amoCRM's default group
    emulator.add_user("Борис Кузнецов", "boris@romashka.example", group_id=office.id)

    groups = api(crm_url, emulator, "GET", "/api/v4/account?with=users_groups").json()["_embedded"]["users_groups"]
    users = api(crm_url, emulator, "GET", "/api/v4/users?with=group").json()["_embedded"]["users"]

    assert [g["id"] for g in groups] == [0, office.id]
    assert [u["rights"]["group_id"] for u in users] == [None, office.id]


def test_a_user_sent_without_a_group_or_with_a_null_one_lands_in_the_default_group(
    crm_url: str, emulator: Emulator
) -> None:
    answer = api(
        crm_url,
        emulator,
        "POST",
        "/api/v4/users",
        [new_user("Вера Попова", "vera@romashka.example"), new_user("Юрий Орлов", "yuri@x.example", group_id=None)],
    )

    assert answer.status_code == 200
    assert [u["rights"]["group_id"] for u in answer.json()["_embedded"]["users"]] == [None, None]
    assert [u.group_id for u in emulator.users()] == [0, 0]


@pytest.mark.parametrize(
    ("name", "detail"),
    [
        ("Ф" * 51, "Имя длиннее 50 символов"),
        ("Иван «Ваня» Петров", "Имя содержит специальные символы"),
        ("Иван_Петров", "Имя содержит специальные символы"),
        ("Иван (продажи)", "Имя содержит специальные символы"),
    ],
)
def test_names_over_50_characters_or_with_special_characters_are_refused(
    crm_url: str, emulator: Emulator, name: str, detail: str
) -> None:
    answer = api(crm_url, emulator, "POST", "/api/v4/users", [new_user(name, "ivan@romashka.example")])

    assert answer.status_code == 400
    [item] = answer.json()["validation-errors"]
    assert item["errors"] == [{"code": "InvalidValue", "path": "name", "detail": detail}]
    assert emulator.users() == []


def test_names_of_50_characters_and_of_any_script_are_accepted(crm_url: str, emulator: Emulator) -> None:
    names = ["Ё" * 50, "Анна-Мария Д. Ёлкина", "John O Connor"]
    body = [new_user(name, f"u{i}@romashka.example") for i, name in enumerate(names)]
    assert api(crm_url, emulator, "POST", "/api/v4/users", body).status_code == 200


def test_adding_users_stops_above_100_users_with_a_403_that_names_the_limit(crm_url: str, emulator: Emulator) -> None:
    emulator.seed(101)

    answer = api(crm_url, emulator, "POST", "/api/v4/users", [new_user("Вера Попова", "vera@romashka.example")])

    assert answer.status_code == 403
    assert answer.headers["Content-Type"].startswith("application/problem+json")
    assert "больше 100 пользователей" in answer.json()["detail"]
    assert len(emulator.users()) == 101
    # The account itself works: reads and other writes are answered.
    assert api(crm_url, emulator, "GET", "/api/v4/account").status_code == 200
    leaving = emulator.users()[5]
    assert api(crm_url, emulator, "POST", "/api/v4/users/deactivate", [{"id": leaving.id}]).ok


def test_at_100_users_adding_still_works(crm_url: str, emulator: Emulator) -> None:
    emulator.seed(100)
    answer = api(crm_url, emulator, "POST", "/api/v4/users", [new_user("Вера Попова", "vera@romashka.example")])
    assert answer.status_code == 200


# --- the client reads those shapes ----------------------------------------------------------------------------


def test_the_client_reads_a_null_group_as_the_default_group(client: AmoCrmClient, emulator: Emulator) -> None:
    emulator.add_user("Анна Смирнова", "anna@romashka.example")
    [anna] = client.list_users()
    assert anna.group_id == DEFAULT_GROUP_ID == 0
    assert [g.id for g in client.list_groups()] == [0]


def test_a_new_user_in_the_default_department_is_sent_without_a_group(client: AmoCrmClient, emulator: Emulator) -> None:
    [vera] = client.create_users([NewCrmUser("Вера Попова", "vera@romashka.example", generate_password(), 0)])
    [request] = [r for r in emulator.requests if r.method == "POST"]
    assert "group_id" not in request.body[0]["rights"]
    assert vera.group_id == 0 and emulator.user(vera.id).group_id == 0


@pytest.mark.parametrize(
    ("name", "sent"),
    [
        (
            "Константинопольская-Архангельская Александра Владимировна",
            "Константинопольская-Архангельская Александра",
        ),
        ("Иван «Ваня» Петров (продажи)", "Иван Ваня Петров продажи"),
        ("Иван_Петров", "Иван Петров"),
        ("Ж" * 60, "Ж" * 50),
        ("***", "ivan.petrov"),
        ("Анна-Мария Д. Ёлкина", "Анна-Мария Д. Ёлкина"),
    ],
)
def test_names_are_shortened_and_cleaned_as_amocrm_requires(
    client: AmoCrmClient, emulator: Emulator, name: str, sent: str
) -> None:
    assert amocrm_user_name(name, "ivan.petrov@romashka.example") == sent
    [created] = client.create_users([NewCrmUser(name, "ivan.petrov@romashka.example", generate_password())])
    assert created.name == sent == emulator.user(created.id).name
    assert len(sent) <= 50


def test_a_refusal_to_add_users_above_100_is_that_operations_refusal_not_a_blocked_account(
    client: AmoCrmClient, emulator: Emulator
) -> None:
    seeded = emulator.seed(101)

    with pytest.raises(CrmOperationForbidden) as refused:
        client.create_users([NewCrmUser("Вера Попова", "vera@romashka.example", generate_password())])

    assert isinstance(refused.value, CrmRefused) and not isinstance(refused.value, CrmBlocked)
    assert refused.value.operation == "create"
    assert refused.value.message.startswith("amoCRM не даёт добавлять пользователей через API")
    assert "больше 100 пользователей" in refused.value.message
    client.deactivate_users([seeded[3].id])  # the other kinds of change still go through
    assert not emulator.user(seeded[3].id).is_active


def test_a_403_everywhere_is_still_a_blocked_account(client: AmoCrmClient, emulator: Emulator) -> None:
    emulator.fail_next(2, status=403)  # the create and the probe of the account both refused
    with pytest.raises(CrmBlocked):
        client.create_users([NewCrmUser("Вера Попова", "vera@romashka.example", generate_password())])


def test_an_unpaid_account_is_still_blocked_for_every_change(client: AmoCrmClient, emulator: Emulator) -> None:
    emulator.blocked = True
    with pytest.raises(CrmBlocked):
        client.create_users([NewCrmUser("Вера Попова", "vera@romashka.example", generate_password())])
