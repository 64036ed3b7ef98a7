"""Data types, errors and the client interface shared by every CRM adapter of the seat sync."""

from __future__ import annotations

import secrets
import string
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

# amoCRM accepts at most this many users in one create request; the other batch calls use the same size
# so that one refused batch never affects more than a handful of people.
BATCH_SIZE = 10


# amoCRM lists its default user group with id 0, but answers `rights.group_id: null` for the users in it.
DEFAULT_GROUP_ID = 0


@dataclass(frozen=True, slots=True)
class CrmUser:
    id: int
    name: str
    email: str | None
    phone: str | None
    is_active: bool
    is_free: bool
    is_admin: bool
    # None: the CRM's default group (adapters that can tell say DEFAULT_GROUP_ID instead).
    group_id: int | None


@dataclass(frozen=True, slots=True)
class CrmGroup:
    id: int
    name: str


@dataclass(frozen=True, slots=True)
class NewCrmUser:
    name: str
    email: str
    password: str = field(repr=False)
    # None leaves the choice to the CRM (its default group, id 0 in amoCRM).
    group_id: int | None = None


@dataclass(frozen=True, slots=True)
class CrmAccountInfo:
    id: int
    name: str
    subdomain: str


class CrmError(Exception):
    """A CRM call failed; the message is Russian and can be shown to the account owner as is."""

    retryable: bool = False

    def __init__(self, message: str, *, detail: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.detail = detail


class CrmUnavailable(CrmError):
    """Network error, 5xx or rate limiting that outlasted the retries: try again later."""

    retryable = True


class CrmAuthError(CrmError):
    """The CRM does not accept our tokens even after a refresh: the integration must be reconnected."""


class CrmBlocked(CrmError):
    """The CRM account is blocked or unpaid (HTTP 402/403)."""

    def __init__(self, message: str = "Аккаунт CRM заблокирован или не оплачен", **kwargs: Any) -> None:
        super().__init__(message, **kwargs)


class CrmRefused(CrmError):
    """The CRM understood the request and refused it: plan limit, admin user, invalid data."""

    def __init__(
        self,
        message: str,
        *,
        detail: str | None = None,
        validation_errors: Sequence[dict[str, Any]] = (),
    ) -> None:
        super().__init__(message, detail=detail)
        self.validation_errors = list(validation_errors)


class CrmOperationForbidden(CrmRefused):
    """The CRM refuses one kind of change (HTTP 403) while the account itself answers: that change's problem only.

    amoCRM documents that adding users through the API stops working above 100 users in the account and needs an
    administrator's rights; it answers 403 then, which must not be read as a blocked account.
    """

    def __init__(self, message: str, *, operation: str, detail: str | None = None) -> None:
        super().__init__(message, detail=detail)
        self.operation = operation


class CrmBadResponse(CrmError):
    """The CRM answered with something we cannot read (broken JSON, unexpected shape)."""


@runtime_checkable
class CrmClient(Protocol):
    """What the seat sync needs from a CRM; implemented over HTTP by AmoCrmClient."""

    def account_info(self) -> CrmAccountInfo: ...

    def list_users(self) -> list[CrmUser]:
        """Every user of the account, active or not, across all pages."""
        ...

    def list_groups(self) -> list[CrmGroup]: ...

    def create_users(self, users: Sequence[NewCrmUser]) -> list[CrmUser]:
        """Create free users, in batches the CRM accepts; returns them in the order given."""
        ...

    def deactivate_users(self, ids: Iterable[int]) -> None: ...

    def activate_users(self, ids: Iterable[int]) -> None: ...


_PASSWORD_SYMBOLS = "!#$%&*+-=?@_"
_PASSWORD_ALPHABET = string.ascii_letters + string.digits + _PASSWORD_SYMBOLS


def generate_password(length: int = 20) -> str:
    """A one-time password for a user created in the CRM; they reset it on first sign-in."""
    if length < 16:
        raise ValueError("password length must be at least 16")
    # Guarantee every class once, then fill and shuffle, so CRM password rules never reject it.
    chars = [
        secrets.choice(string.ascii_lowercase),
        secrets.choice(string.ascii_uppercase),
        secrets.choice(string.digits),
        secrets.choice(_PASSWORD_SYMBOLS),
    ]
    chars += [secrets.choice(_PASSWORD_ALPHABET) for _ in range(length - len(chars))]
    secrets.SystemRandom().shuffle(chars)
    return "".join(chars)


def batched(items: Sequence[Any], size: int = BATCH_SIZE) -> list[Sequence[Any]]:
    """Split a sequence into consecutive chunks of at most ``size`` items."""
    return [items[i : i + size] for i in range(0, len(items), size)]
