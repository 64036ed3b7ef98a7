"""The refusals of the membership and department services: a Russian message for the person and an HTTP status."""

from __future__ import annotations


class MembershipError(ValueError):
    """A membership change was refused; nothing was changed. `message` can be shown to the person as is."""

    status_code = 400
    default_message = ""  # what a refusal raised without a message says (the "not found" ones)

    def __init__(self, message: str | None = None, *, field: str | None = None) -> None:
        message = message or self.default_message
        super().__init__(message)
        self.message = message
        self.field = field


class InvalidUserData(MembershipError):
    """A malformed phone, an empty name, an unknown role…; `field` names the form field."""


class AccountNotFound(MembershipError):
    status_code = 404
    default_message = "Аккаунт не найден."


class UserNotFound(MembershipError):
    """No such user in this account (a user of another account is not found either)."""

    status_code = 404
    default_message = "Пользователь не найден в этой компании."


class DepartmentNotFound(MembershipError):
    status_code = 404
    default_message = "Отдел не найден в этой компании."


class MembershipConflict(MembershipError):
    """The change contradicts the membership's current state."""

    status_code = 409


class DuplicateUser(MembershipConflict):
    pass


class LastOwnerError(MembershipConflict):
    default_message = (
        "В компании должен остаться хотя бы один активный владелец. Сначала назначьте владельцем другого пользователя."
    )


class UserNotActive(MembershipConflict):
    pass


class DepartmentInUse(MembershipConflict):
    pass


# ---------------------------------------------------------------------------------------------------------------
