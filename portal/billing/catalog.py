"""The plan catalog and offered periods, exactly as in the vendor's published terms."""

from __future__ import annotations

from dataclasses import dataclass

from portal.wording import plural_ru

GB = 1024**3
TB = 1024**4

MAX_SELF_SERVICE_SEATS = 1000

# Months → discount percent. The only place periods and discounts are defined.
PERIODS: dict[int, int] = {6: 0, 9: 5, 12: 7, 24: 10}
ALLOWED_MONTHS: tuple[int, ...] = tuple(sorted(PERIODS))
TRIAL_MONTHS = 1


def _seats_ru(seats: int) -> str:
    return f"{seats} {plural_ru(seats, 'пользователь', 'пользователя', 'пользователей')}"


@dataclass(frozen=True)
class Plan:
    code: str
    seats: int
    storage_bytes: int
    monthly_price: int  # kopecks
    custom: bool = False
    account_id: int | None = None  # a custom plan is visible only to this account

    @property
    def is_free(self) -> bool:
        return self.monthly_price == 0

    @property
    def title(self) -> str:
        if self.custom:
            return f"Индивидуальный: {_seats_ru(self.seats)}"
        return _seats_ru(self.seats)


PLANS: tuple[Plan, ...] = (
    Plan("users-5", 5, 2 * GB, 0),
    Plan("users-12", 12, 5 * GB, 990_00),
    Plan("users-24", 24, 24 * GB, 1_990_00),
    Plan("users-50", 50, 100 * GB, 4_990_00),
    Plan("users-200", 200, 300 * GB, 9_990_00),
    Plan("users-500", 500, 1 * TB, 19_990_00),
    Plan("users-1000", 1000, 2 * TB, 29_990_00),
)
FREE_PLAN: Plan = PLANS[0]

_BY_CODE: dict[str, Plan] = {plan.code: plan for plan in PLANS}


def get_plan(code: str) -> Plan | None:
    """A self-service plan by code; custom plans are stored per account, not here."""
    return _BY_CODE.get(code)


def _is_int(value: object) -> bool:
    # bool is an int subclass; True seats or True kopecks would be a bug upstream.
    return isinstance(value, int) and not isinstance(value, bool)


def make_custom_plan(account_id: int, seats: int, storage_bytes: int, monthly_price: int) -> Plan:
    """A plan over 1000 users that support sets for one account."""
    if not _is_int(account_id) or account_id <= 0:
        raise ValueError("Не указан аккаунт для индивидуального тарифа.")
    if not _is_int(seats) or seats <= MAX_SELF_SERVICE_SEATS:
        raise ValueError(f"Индивидуальный тариф — только для более чем {MAX_SELF_SERVICE_SEATS} пользователей.")
    if not _is_int(storage_bytes) or storage_bytes <= 0:
        raise ValueError("Объём хранилища должен быть больше нуля.")
    if not _is_int(monthly_price) or monthly_price <= 0:
        raise ValueError("Цена в месяц должна быть целым положительным числом копеек.")
    return Plan(
        code=f"custom-{account_id}-{seats}",
        seats=seats,
        storage_bytes=storage_bytes,
        monthly_price=monthly_price,
        custom=True,
        account_id=account_id,
    )
