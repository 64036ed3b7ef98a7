"""Creating, deactivating and activating users in the CRM, and the CRM's refusals."""

from __future__ import annotations

import pytest

from devtools.crm_emulator import Emulator
from portal.seats.crm import AmoCrmClient, CrmRefused, NewCrmUser, generate_password


def _new(n: int, start: int = 0) -> list[NewCrmUser]:
    return [NewCrmUser(f"Сотрудник {i}", f"user{i}@romashka.example", generate_password()) for i in range(start, n)]


def test_creates_free_users_in_batches_of_ten(client: AmoCrmClient, emulator: Emulator) -> None:
    wanted = _new(23)

    created = client.create_users(wanted)

    posts = [r for r in emulator.requests if r.method == "POST" and r.path == "/api/v4/users"]
    assert [len(r.body) for r in posts] == [10, 10, 3]
    assert all(item["rights"] == {"is_free": True} for r in posts for item in r.body)
    assert [u.email for u in created] == [w.email for w in wanted]
    assert all(u.is_free and u.is_active and not u.is_admin for u in created)
    assert {u.id for u in client.list_users()} == {u.id for u in created}


def test_creates_into_a_group(client: AmoCrmClient, emulator: Emulator) -> None:
    group = emulator.add_group("Логистика")

    [user] = client.create_users([NewCrmUser("Пётр Орлов", "p.orlov@romashka.example", "Secret-pass-123", group.id)])

    assert user.group_id == group.id
    assert emulator.user(user.id).group_id == group.id


def test_plan_limit_refusal_names_the_limit_and_creates_nobody(client: AmoCrmClient, emulator: Emulator) -> None:
    emulator.seed(4)
    emulator.plan_limit = 5

    with pytest.raises(CrmRefused) as refused:
        client.create_users(_new(3))

    assert "создание пользователей" in refused.value.message
    assert "Превышен лимит пользователей тарифа CRM: разрешено 5" in refused.value.message
    assert refused.value.retryable is False
    assert len(emulator.users()) == 4


def test_taken_email_refusal_keeps_the_validation_errors(client: AmoCrmClient, emulator: Emulator) -> None:
    existing = emulator.add_user("Анна Петрова", "a.petrova@romashka.example")

    with pytest.raises(CrmRefused) as refused:
        client.create_users([NewCrmUser("Анна Петрова", existing.email.upper(), generate_password())])

    assert "email: Адрес A.PETROVA@ROMASHKA.EXAMPLE уже занят" in str(refused.value)
    assert refused.value.detail == "Данные пользователей не прошли проверку"
    assert refused.value.validation_errors[0]["errors"][0]["path"] == "email"


def test_retry_after_a_failure_that_happened_after_creation_does_not_duplicate(
    client: AmoCrmClient, emulator: Emulator
) -> None:
    emulator.fail_next(1, 500, after_processing=True)

    created = client.create_users(_new(3))

    assert sorted(u.email for u in emulator.users()) == sorted(u.email for u in created)
    assert len(emulator.users()) == 3
    posts = [r.status for r in emulator.requests if r.method == "POST"]
    assert posts == [500]


def test_503_on_create_is_simply_resent(client: AmoCrmClient, emulator: Emulator) -> None:
    emulator.fail_next(1, 503)

    created = client.create_users(_new(2))

    assert [r.status for r in emulator.requests] == [503, 200]
    assert len(created) == len(emulator.users()) == 2


def test_deactivate_then_activate(client: AmoCrmClient, emulator: Emulator) -> None:
    _admin, first, second, third = emulator.seed(4)

    client.deactivate_users([first.id, second.id])

    assert [emulator.user(u.id).is_active for u in (first, second, third)] == [False, False, True]
    [deactivate] = [r for r in emulator.requests if r.path == "/api/v4/users/deactivate"]
    assert (deactivate.body, deactivate.status) == ([{"id": first.id}, {"id": second.id}], 204)

    client.activate_users([first.id])

    assert [emulator.user(u.id).is_active for u in (first, second)] == [True, False]
    assert [r.status for r in emulator.requests if r.path == "/api/v4/users/activate"] == [202]


def test_deactivation_is_sent_in_batches(client: AmoCrmClient, emulator: Emulator) -> None:
    users = emulator.seed(24)[1:]

    client.deactivate_users([u.id for u in users])

    bodies = [r.body for r in emulator.requests if r.path == "/api/v4/users/deactivate"]
    assert [len(b) for b in bodies] == [10, 10, 3]
    assert not any(u.is_active for u in emulator.users() if not u.is_admin)


def test_admin_cannot_be_deactivated(client: AmoCrmClient, emulator: Emulator) -> None:
    admin, colleague = emulator.seed(2)

    with pytest.raises(CrmRefused) as refused:
        client.deactivate_users([colleague.id, admin.id])

    assert refused.value.message == (
        "CRM отказала в операции «отключение пользователей»: "
        f"Нельзя отключить администратора аккаунта: {admin.name} (id {admin.id})"
    )
    assert emulator.user(colleague.id).is_active, "a refused batch changes nothing"


def test_activation_over_the_plan_limit_is_refused(client: AmoCrmClient, emulator: Emulator) -> None:
    _admin, sleeping = emulator.seed(2)
    emulator.remove_user(sleeping.id)
    emulator.add_user("Новый Сотрудник", "new@romashka.example")
    emulator.plan_limit = 2

    with pytest.raises(CrmRefused, match="включение пользователей.*разрешено 2"):
        client.activate_users([sleeping.id])

    assert emulator.user(sleeping.id).is_active is False


def test_empty_writes_send_nothing(client: AmoCrmClient, emulator: Emulator) -> None:
    assert client.create_users([]) == []
    client.deactivate_users([])
    client.activate_users([])

    assert emulator.requests == []
