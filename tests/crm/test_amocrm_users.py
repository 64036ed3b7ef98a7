"""Reading users, groups and the account from the CRM over real HTTP."""

from __future__ import annotations

from urllib.parse import parse_qs

from devtools.crm_emulator import Emulator
from portal.seats.crm import AmoCrmClient, CrmClient, CrmGroup


def test_lists_every_user_of_a_large_account_page_by_page(client: AmoCrmClient, emulator: Emulator) -> None:
    emulator.seed(1003)

    users = client.list_users()

    expected = emulator.users()
    assert len(users) == 1003
    assert [u.id for u in users] == [u.id for u in expected]
    pages = [r for r in emulator.requests if r.path == "/api/v4/users"]
    assert [parse_qs(r.query)["page"] for r in pages] == [["1"], ["2"], ["3"], ["4"], ["5"]]
    assert all(parse_qs(r.query)["limit"] == ["250"] for r in pages)


def test_maps_rights_groups_and_phones(client: AmoCrmClient, emulator: Emulator) -> None:
    seeded = {u.id: u for u in emulator.seed(40)}

    users = client.list_users()

    assert [u for u in users if u.is_admin] == [next(u for u in users if seeded[u.id].is_admin)]
    assert sum(u.is_free for u in users) == sum(u.is_free for u in seeded.values()) > 0
    for user in users:
        source = seeded[user.id]
        assert (user.name, user.email, user.phone, user.group_id, user.is_active) == (
            source.name,
            source.email,
            source.phone,
            source.group_id,
            True,
        )
    assert any(u.phone is None for u in users) and any(u.phone for u in users)


def test_deactivated_users_are_listed_as_inactive(client: AmoCrmClient, emulator: Emulator) -> None:
    admin, leaving, *_ = emulator.seed(3)
    emulator.remove_user(leaving.id)

    by_id = {u.id: u for u in client.list_users()}

    assert by_id[leaving.id].is_active is False
    assert by_id[admin.id].is_active is True


def test_exactly_one_full_page_needs_one_request(client: AmoCrmClient, emulator: Emulator) -> None:
    emulator.seed(250)

    assert len(client.list_users()) == 250
    assert len([r for r in emulator.requests if r.path == "/api/v4/users"]) == 1


def test_empty_account_answers_204_and_gives_no_users(client: AmoCrmClient, emulator: Emulator) -> None:
    assert client.list_users() == []
    assert [r.status for r in emulator.requests] == [204]


def test_groups_come_from_the_account(client: AmoCrmClient, emulator: Emulator) -> None:
    emulator.seed(5, groups=["Отдел продаж", "Бухгалтерия"])
    warehouse = emulator.add_group("Склад")
    emulator.rename_group(0, "Продажи")

    assert client.list_groups() == [
        CrmGroup(0, "Продажи"),
        CrmGroup(1, "Бухгалтерия"),
        CrmGroup(warehouse.id, "Склад"),
    ]


def test_account_info(client: AmoCrmClient) -> None:
    info = client.account_info()

    assert (info.id, info.name, info.subdomain) == (30000001, "ООО «Ромашка»", "demo")


def test_client_satisfies_the_crm_interface(client: AmoCrmClient) -> None:
    assert isinstance(client, CrmClient)
