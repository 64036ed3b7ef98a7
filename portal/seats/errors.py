"""The refusals of the membership and department services: a Russian message for the person and an HTTP status."""

from __future__ import annotations

from typing import Any


class MembershipError(ValueError):
    """A membership change was refused; nothing was changed. `message` can be shown to the person as is."""

    status_code = 400

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field


class InvalidUserData(MembershipError):
    """A malformed phone, an empty name, an unknown role…; `field` names the form field."""


class AccountNotFound(MembershipError):
    status_code = 404

    def __init__(self, message: str = "Аккаунт не найден.", **kwargs: Any) -> None:
        super().__init__(message, **kwargs)


class UserNotFound(MembershipError):
    """No such user in this account (a user of another account is not found either)."""

    status_code = 404

    def __init__(self, message: str = "Пользователь не найден в этой компании.", **kwargs: Any) -> None:
        super().__init__(message, **kwargs)


class DepartmentNotFound(MembershipError):
    status_code = 404

    def __init__(self, message: str = "Отдел не найден в этой компании.", **kwargs: Any) -> None:
        super().__init__(message, **kwargs)


class MembershipConflict(MembershipError):
    """The change contradicts the membership's current state."""

    status_code = 409


class DuplicateUser(MembershipConflict):
    pass


class LastOwnerError(MembershipConflict):
    def __init__(
        self,
        message: str = "В компании должен остаться хотя бы один активный владелец. "
        "Сначала назначьте владельцем другого пользователя.",
        **kwargs: Any,
    ) -> None:
        super().__init__(message, **kwargs)


class UserNotActive(MembershipConflict):
    pass


class DepartmentInUse(MembershipConflict):
    pass


# ---------------------------------------------------------------------------------------------------------------
