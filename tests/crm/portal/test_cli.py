"""`flask seats sync` for cron: every connected account reconciled, the outbox drained, failures in the exit code."""

from __future__ import annotations

from tests.crm.portal.conftest import Crm


def test_seats_sync_reconciles_every_connected_account_and_drains_the_outbox(crm: Crm) -> None:
    crm.emulator.add_user("Зоя Белова", "zoya@romashka.example", phone="+79165551234")
    crm.add_in_messenger("+79161230001", "Вера Попова", email="vera@romashka.example")

    result = crm.app.test_cli_runner().invoke(args=["seats", "sync"])

    assert result.exit_code == 0, result.output
    assert "Аккаунт 1 (ООО «Ромашка»): Синхронизация выполнена. Создано пользователей: 1" in result.output
    assert "Очередь изменений для CRM: отправлено: 1." in result.output
    assert crm.member_by_crm(crm.emulator.users()[0].id).user.name == "Зоя Белова"
    assert {u.name for u in crm.emulator.users()} == {"Зоя Белова", "Вера Попова"}
    assert [o.status for o in crm.outbox()] == ["done"]


def test_a_failed_sync_fails_the_command_for_cron_to_notice(crm: Crm) -> None:
    crm.emulator.malformed_next(1)

    result = crm.app.test_cli_runner().invoke(args=["seats", "sync", "--no-outbox"])

    assert result.exit_code == 1
    assert "Синхронизация не выполнена: CRM вернула" in result.output
