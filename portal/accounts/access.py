"""Who may enter a view: every view declares it, and objects of another account are never found."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

from flask import abort, current_app, g, redirect, request, session, url_for
from flask_login import current_user

from portal.accounts.models import Account, Membership, Role
from portal.accounts.service import list_memberships
from portal.db import get_db

F = TypeVar("F", bound=Callable[..., Any])

ALL_ROLES = (Role.OWNER.value, Role.ACCOUNTANT.value, Role.MEMBER.value)


def public(view: F) -> F:
    """Anyone, signed in or not."""
    view._access = ("public",)  # type: ignore[attr-defined]
    return view


def roles_required(*roles: str) -> Callable[[F], F]:
    """Signed-in members of the current account with one of these roles; others get 403, visitors the sign-in."""
    allowed = tuple(str(r) for r in roles) or ALL_ROLES

    def decorator(view: F) -> F:
        @functools.wraps(view)
        def wrapped(*args: Any, **kwargs: Any) -> Any:
            if not current_user.is_authenticated:
                return redirect(url_for("accounts.login", next=request.full_path.rstrip("?")))
            membership = current_membership()
            if membership is None:
                if current_user.is_staff:
                    return redirect(url_for("support.queue")) if "support.queue" in _endpoints() else abort(403)
                abort(403)
            if membership.role not in allowed:
                abort(403)
            return view(*args, **kwargs)

        wrapped._access = allowed  # type: ignore[attr-defined]
        return wrapped  # type: ignore[return-value]

    return decorator


def login_required_any(view: F) -> F:
    """Any signed-in person, with or without an account (e.g. the account switcher)."""

    @functools.wraps(view)
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        if not current_user.is_authenticated:
            return redirect(url_for("accounts.login", next=request.full_path.rstrip("?")))
        return view(*args, **kwargs)

    wrapped._access = ("signed-in",)  # type: ignore[attr-defined]
    return wrapped  # type: ignore[return-value]


def staff_required(view: F) -> F:
    """The vendor's support staff only; everyone else gets 404, so the console's existence is not revealed."""

    @functools.wraps(view)
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        if not current_user.is_authenticated or not current_user.is_staff:
            abort(404)
        return view(*args, **kwargs)

    wrapped._access = ("staff",)  # type: ignore[attr-defined]
    return wrapped  # type: ignore[return-value]


def _endpoints() -> set[str]:
    return set(current_app.view_functions)


def current_membership() -> Membership | None:
    """The signed-in person's membership in the account chosen in the switcher (or their first one)."""
    if "membership" in g:
        return g.membership
    membership = None
    if current_user.is_authenticated:
        db = get_db()
        account_id = session.get("account_id")
        # The same list the header shows: one query serves both.
        memberships = list_memberships(db, current_user)
        if isinstance(account_id, int):
            membership = next((m for m in memberships if m.account_id == account_id), None)
        if membership is None:
            membership = memberships[0] if memberships else None
            if membership is not None:
                session["account_id"] = membership.account_id
    g.membership = membership
    return membership


def current_account() -> Account | None:
    m = current_membership()
    return m.account if m else None


def require_account() -> Account:
    """For views already behind roles_required: the current account, never None."""
    account = current_account()
    if account is None:
        abort(403)
    return account


def has_role(*roles: str) -> bool:
    m = current_membership()
    return m is not None and m.role in roles
