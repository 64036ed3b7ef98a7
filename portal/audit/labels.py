"""How an audit record reads: titles of its actions, fields and values, and its before → after as lines."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from portal.audit.log import AuditLog
from portal.billing.display import format_storage
from portal.billing.models import plan_title_for_code
from portal.money import format_rub

ACTION_TITLES = {
    "support.request_created": "Заявка в поддержку",
    "support.request_taken": "Заявка взята в работу",
    "support.request_resolved": "Заявка закрыта",
    "support.trial_switched_on": "Включён пробный период",
    "support.custom_plan_set": "Индивидуальный тариф",
    "support.invoice_marked_paid": "Счёт отмечен оплаченным",
    "support.invoice_canceled": "Счёт отменён поддержкой",
    "support.statement_imported": "Загружена выписка",
    "support.payment_linked": "Платёж привязан к счёту",
    "support.payment_dismissed": "Платёж отклонён: не наш",
    "support.document_resent": "Документ отправлен повторно",
    "billing.trial_started": "Начат пробный период",
    "billing.trial_expired": "Пробный период закончился",
    "billing.order_created": "Заказ создан",
    "billing.order_paid": "Заказ оплачен",
    "billing.order_paid_unapplied": "Оплата не применена",
    "billing.order_canceled": "Заказ отменён",
    "billing.order_expired": "Заказ истёк",
    "billing.custom_plan_set": "Индивидуальный тариф сохранён",
    "billing.custom_plan_deactivated": "Индивидуальный тариф снят",
    "billing.renewal_started": "Начался продлённый период",
    "billing.scheduled_change_applied": "Сменился тариф",
    "billing.scheduled_change_canceled": "Запланированный период отменён",
    "billing.scheduled_order_opened": "Открыта оплата запланированного перехода",
    "billing.expired": "Оплаченный период закончился",
    "billing.rights_ended": "Права прекращены досрочно",
    "documents.requisites_saved": "Реквизиты сохранены",
    "documents.invoice_issued": "Выставлен счёт",
    "documents.card_order_recorded": "Заказ компании картой: будет УПД",
    "documents.upd_not_due": "УПД не будет: период отменён до начала",
    "documents.invoice_paid": "Счёт оплачен",
    "documents.invoice_canceled": "Счёт отменён",
    "documents.ukd_numbered": "Составлен корректировочный документ (УКД)",
    "documents.advance_invoice_numbered": "Составлен счёт-фактура на аванс",
    "payments.refund_requested": "Запрошен возврат",
    "payments.refunded": "Деньги возвращены",
    "payments.refund_canceled": "Возврат отменён",
    "payments.released": "Деньги заказа возвращены на баланс",
    "payments.attention_resolved": "Вопрос по платежу решён",
    "payments.rights_refunded": "Возврат за неиспользованный период",
    "documents.statement_line_linked": "Платёж из выписки привязан",
    "documents.statement_line_dismissed": "Платёж из выписки отклонён",
    "documents.edo_sent": "Документ отправлен в ЭДО",
    "documents.edo_status": "Статус документа в ЭДО изменился",
    "documents.edo_rejected": "Покупатель отклонил документ в ЭДО",
    "documents.edo_resend": "Документ отправлен в ЭДО повторно",
    "payment.started": "Платёж начат",
    "payment.succeeded": "Платёж прошёл",
    "payment.canceled": "Платёж не прошёл",
    "payment.flagged": "Платёж на проверке",
    "seats.user_added": "Пользователь добавлен",
    "seats.user_deactivated": "Пользователь отключён",
    "seats.user_reactivated": "Пользователь включён",
    "seats.role_changed": "Роль изменена",
    "seats.departments_changed": "Отделы изменены",
    "seats.department_created": "Отдел создан",
    "seats.department_renamed": "Отдел переименован",
    "seats.department_deleted": "Отдел удалён",
    "seats.crm_linked": "Связан с CRM",
    "crm.connected": "CRM подключена",
    "crm.disconnected": "CRM отключена",
    "account.registered": "Компания зарегистрирована",
    "staff.granted": "Назначен сотрудник поддержки",
}

ACTION_GROUPS = {
    "support.": "Все действия поддержки",
    "billing.": "Все: тарифы и заказы",
    "documents.": "Все: документы",
    "payment.": "Все: платежи картой",
    "payments.": "Все: деньги компании",
    "seats.": "Все: пользователи",
    "crm.": "Все: CRM",
}


def action_title(action: str) -> str:
    return ACTION_TITLES.get(action, action)


FIELD_TITLES = {
    "plan": "Тариф",
    "topups": "Повышаются и оплаченные периоды",
    "part": "Часть заказа",
    "balance_added": "На баланс",
    "status": "Статус",
    "paid_until": "Оплачен по",
    "trial_until": "Пробный до",
    "trial_used": "Пробный использован",
    "period_start": "Начало периода",
    "period_end": "Конец периода (искл.)",
    "scheduled": "Запланировано",
    "request_id": "Заявка №",
    "kind": "Вид",
    "users_expected": "Пользователей ожидается",
    "code": "Код тарифа",
    "seats": "Пользователей",
    "storage_bytes": "Хранилище",
    "monthly_price": "Цена в месяц",
    "active": "Действует",
    "invoice": "Счёт",
    "invoice_status": "Статус счёта",
    "amount": "Сумма",
    "payment_amount": "Сумма платежа",
    "invoice_amount": "Сумма счёта",
    "amount_mismatch_confirmed": "Расхождение суммы подтверждено",
    "reference": "Платёжный документ",
    "paid_on": "Дата оплаты",
    "payment": "Платёж",
    "payer": "Плательщик",
    "line_id": "Строка выписки",
    "upd": "УПД",
    "document": "Документ",
    "to": "Кому",
    "files": "Файлы",
    "file": "Файл",
    "import_id": "Загрузка №",
    "incoming": "Поступлений",
    "matched": "Сопоставлено",
    "unmatched": "Не сопоставлено",
    "duplicates": "Уже были",
    "order_id": "Заказ №",
    "order_status": "Статус заказа",
    "months": "Месяцев",
    "starts_on": "С",
    "ends_on": "По (искл.)",
    "last_day": "Последний день",
    "payer_type": "Способ оплаты",
    "proration": "Доплата",
    "license_version": "Версия договора",
    "name": "Наименование",
    "inn": "ИНН",
    "kpp": "КПП",
    "ogrn": "ОГРН",
    "address": "Адрес",
    "email": "Почта",
    "bank_name": "Банк",
    "bik": "БИК",
    "account_number": "Расчётный счёт",
    "correspondent_account": "Корр. счёт",
    "edo_id": "ID в ЭДО",
    "valid_until": "Действителен до",
    "pdf_sha256": "SHA-256 файла",
    "crm_account_id": "ID аккаунта CRM",
    "crm_account": "Аккаунт CRM",
    "subdomain": "Поддомен",
    "number": "Номер",
    "issued_on": "Дата",
    "order": "Заказ",
    "role": "Роль",
    "phone": "Телефон",
    "source": "Источник",
    "trial_used_at": "Пробный включён",
    # The team and the CRM (seats.*, crm.*): people read «Пользователь № 12», never `user_id`.
    "user_id": "Пользователь №",
    "crm_user_id": "Пользователь в CRM №",
    "department_ids": "Отделы №",
    "departments": "Отделы",
    "linked_users": "Связанных с CRM пользователей",
    "crm_departments": "Отделов из CRM",
    "budget_per_hour": "Кодов в час",
    "sessions": "Завершено сеансов",
}
MONEY_KEYS = {"amount", "monthly_price", "payment_amount", "invoice_amount", "proration", "part"}
VALUE_TITLES = {
    "scheduled": "запланирован, оплата позже",
    "free": "бесплатный",
    "trial": "пробный",
    "paid": "оплачен",
    "issued": "ожидает оплаты",
    "pending": "ожидает оплаты",
    "canceled": "отменён",
    "expired": "истёк",
    "unmatched": "не сопоставлен",
    "matched": "сопоставлен",
    "linked": "привязан вручную",
    "dismissed": "отклонён",
    "open": "отправлена",
    "in_progress": "в работе",
    "done": "выполнена",
    "rejected": "отклонена",
    "large_plan": "более 1000 пользователей",
    "card": "карта",
    "invoice": "счёт",
    "new": "покупка",
    "renewal": "продление",
    "upgrade": "переход на больший",
    "downgrade": "переход на меньший",
    "org": "организация",
    "ip": "ИП",
    "owner": "владелец",
    "accountant": "бухгалтер",
    "member": "сотрудник",
    "portal": "портал",
    "messenger": "мессенджер",
    "crm": "CRM",
    "active": "активен",
    "deactivated": "отключён",
    "left": "покинул компанию",
}
_ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


@dataclass(frozen=True)
class Change:
    label: str
    before: str | None
    after: str | None

    @property
    def changed(self) -> bool:
        return self.before != self.after


def format_audit_value(key: str, value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "да" if value else "нет"
    if isinstance(value, int) and key in MONEY_KEYS:
        return format_rub(value)
    if isinstance(value, int) and key == "storage_bytes":
        return format_storage(value)
    if isinstance(value, str):
        if key in ("plan", "code") and value:
            return plan_title_for_code(value)
        if _ISO_DATE.match(value):
            return f"{value[8:10]}.{value[5:7]}.{value[:4]}"
        return VALUE_TITLES.get(value, value)
    if isinstance(value, list):
        return "; ".join(format_audit_value(key, v) for v in value) or "—"
    if isinstance(value, dict):
        return ", ".join(f"{FIELD_TITLES.get(k, k)}: {format_audit_value(k, v)}" for k, v in value.items())
    return str(value)


def audit_changes(entry: AuditLog) -> list[Change]:
    """The record's before → after as readable lines; keys present on one side only show «—» on the other."""
    before = entry.before or {}
    after = entry.after or {}
    # A field empty on both sides (e.g. no request, no paid period) says nothing: it is left out.
    keys = [
        k
        for k in dict.fromkeys([*after.keys(), *before.keys()])
        if not (before.get(k) is None and after.get(k) is None)
    ]
    return [
        Change(
            FIELD_TITLES.get(k, k),
            format_audit_value(k, before[k]) if k in before else None,
            format_audit_value(k, after[k]) if k in after else None,
        )
        for k in keys
    ]
