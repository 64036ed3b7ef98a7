"""The team page (owner) and the over-limit warning every signed-in user of an over-limit account sees."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from flask import Blueprint, abort, current_app, flash, g, redirect, render_template, request, session, url_for
from flask_login import current_user
from sqlalchemy.exc import SQLAlchemyError

from portal.accounts.access import current_membership, require_account, roles_required
from portal.accounts.models import Account, Membership, Role
from portal.accounts.phone import format_phone
from portal.billing.display import format_storage
from portal.billing.subscriptions import PurchaseError
from portal.db import get_db, utcnow
from portal.nav import register_nav
from portal.pagination import keys_from_args
from portal.payments.offer import Offer, get_offer
from portal.seats import team
from portal.seats.crm.models import CrmConnection
from portal.seats.errors import MembershipError, UserNotFound
from portal.seats.forms import AddUserForm, ConfirmForm, RoleForm, role_choices
from portal.seats.limits import SUGGESTION_MONTHS, Limits, get_limits
from portal.seats.members import change_role, deactivate_user, reactivate_user
from portal.seats.queries import (
    MEMBER_KEY_TYPES,
    get_member,
    get_primary_owner,
)
from portal.wording import plural_ru

log = logging.getLogger(__name__)

bp = Blueprint("seats", __name__)

register_nav("seats.team_list", "Команда", (Role.OWNER.value,), order=30)

PAGE_SIZE = 50
STATUS_TABS = (("active", "Активные"), ("deactivated", "Отключённые"), ("left", "Покинули"), ("all", "Все"))
# Where the owner fixes the excess: there the warning is a banner, not a dialog in the way of the fix.
NO_DIALOG_BLUEPRINTS = frozenset({"seats", "billing", "payments"})
# The accounts whose over-limit dialog this session has already shown: once is a warning, every page is a wall.
DIALOG_SEEN_KEY = "over_limit_dialog_seen"

# One storage format on every page (the plans' «5 ГБ», never «0 Б» here and «0 ГБ» there).
bp.add_app_template_filter(format_storage, "filesize")
bp.add_app_template_global(plural_ru, "plural_ru")


# --- the over-limit warning on every page ---------------------------------------------------------------------


@dataclass(frozen=True)
class LimitState:
    """What the over-limit dialog/banner and the storage notice need, computed once per request."""

    limits: Limits
    account_name: str
    is_owner: bool
    can_order_invoice: bool  # the accountant: orders an invoice at checkout, does not choose plans or the team
    owner: Membership | None  # whom an accountant or member should ask, by the name this company gave them
    pay_url: str | None  # checkout with the suggested plan; None when only support can set a plan
    offer: Offer | None  # what checkout will charge for the suggested plan, and what that covers
    team_url: str | None
    plans_url: str | None
    show_dialog: bool
    show_storage_notice: bool

    @property
    def over_limit(self) -> bool:
        return self.limits.over_limit


def _endpoint_exists(name: str) -> bool:
    return name in current_app.view_functions


def pay_url(plan_code: str) -> str:
    """Checkout with the suggested plan and the minimum period preselected (plans page until checkout exists)."""
    if _endpoint_exists("billing.checkout"):
        return url_for("billing.checkout", plan=plan_code, months=SUGGESTION_MONTHS)
    if _endpoint_exists("billing.plans"):
        return url_for("billing.plans", suggested=plan_code)
    return f"/plans?suggested={plan_code}"


def _suggested_offer(account_id: int, limits: Limits) -> Offer | None:
    """The checkout's own quote for the suggested plan: a paid company is asked for the co-termed extra payment."""
    suggestion = limits.suggestion
    if suggestion is None or suggestion.plan is None:
        return None
    try:
        return get_offer(get_db(), account_id, suggestion.plan, SUGGESTION_MONTHS, utcnow())
    except PurchaseError:
        return None


def _dialog_due(account_id: int, over_limit: bool) -> bool:
    """Once per session and account, never on an error page, nor where the owner fixes the excess."""
    if not over_limit or g.get("error_page") or request.blueprint in NO_DIALOG_BLUEPRINTS:
        return False
    seen = session.get(DIALOG_SEEN_KEY)
    seen = [a for a in seen if isinstance(a, int)] if isinstance(seen, list) else []
    if account_id in seen:
        return False
    session[DIALOG_SEEN_KEY] = [*seen, account_id][-20:]
    return True


def _build_state(account: Account, role: str) -> LimitState:
    db = get_db()
    limits = get_limits(db, account.id, utcnow())
    is_owner = role == Role.OWNER
    can_pay = role in (Role.OWNER.value, Role.ACCOUNTANT.value)
    owner = None
    if limits.over_limit and not is_owner:
        owner = get_primary_owner(db, account.id)
    suggestion = limits.suggestion
    has_plan = suggestion is not None and suggestion.plan is not None
    return LimitState(
        limits=limits,
        account_name=account.name,
        is_owner=is_owner,
        can_order_invoice=role == Role.ACCOUNTANT.value,
        owner=owner,
        pay_url=pay_url(suggestion.plan.code) if has_plan and can_pay else None,  # type: ignore[union-attr]
        offer=_suggested_offer(account.id, limits) if limits.over_limit else None,
        # On the team page itself the owner needs no button to it.
        team_url=url_for("seats.team_list") if request.blueprint != "seats" else None,
        plans_url=url_for("billing.plans") if _endpoint_exists("billing.plans") else None,
        show_dialog=_dialog_due(account.id, limits.over_limit),
        show_storage_notice=limits.storage_warning and request.endpoint == "index",
    )


def limit_state() -> LimitState | None:
    """The current account's limits for the warning partials; None for visitors, staff and people without one.

    Templates call it lazily, so a page that does not show the warning (a PDF, a JSON error) costs no query.
    """
    if "seats_limit_state" in g:
        return g.seats_limit_state
    state = None
    if current_user.is_authenticated:
        membership = current_membership()
        if membership is not None:
            try:
                state = _build_state(membership.account, membership.role)
            except SQLAlchemyError:
                # A warning must never break the page it sits on (e.g. the error page of a failed transaction).
                log.exception("over-limit state unavailable for account %s", membership.account_id)
    g.seats_limit_state = state
    return state


@bp.app_context_processor
def _limits_context() -> dict[str, Any]:
    return {"seats_limit_state": limit_state}


# --- the team page ------------------------------------------------------------------------------------------------

# The last deactivation, offered for undo once on the team page.
UNDO_KEY = "seats_undo_deactivation"


def _email_field_for(form: AddUserForm, crm: CrmConnection | None) -> None:
    if crm is not None:
        form.email.label.text = "Почта"
        form.email.description = "Обязательна: к компании подключена amoCRM, и без почты пользователя в ней не создать."


def _render_team(account: Account, form: AddUserForm, status_code: int = 200) -> Any:
    db = get_db()
    status = request.args.get("status", "active")
    if status not in {key for key, _ in STATUS_TABS}:
        status = "active"
    search = (request.args.get("q") or "").strip()[:100]
    status_filter = None if status == "all" else status
    after, before = keys_from_args(request.args, MEMBER_KEY_TYPES)
    view = team.team_view(
        db, account.id, status=status_filter, search=search or None, limit=PAGE_SIZE, after=after, before=before
    )
    state = limit_state()
    limits = state.limits if state is not None else get_limits(db, account.id, utcnow())
    crm = team.connected_crm(db, account.id)
    _email_field_for(form, crm)
    undo = session.pop(UNDO_KEY, None) if request.method == "GET" else None
    return (
        render_template(
            "seats/team_list.html",
            account=account,
            form=form,
            members=view.page.rows,
            departments=view.departments,
            limits=limits,
            state=state,
            status=status,
            status_tabs=STATUS_TABS,
            counts=view.counts,
            search=search,
            page=view.page,
            total=None if search else view.counts[status],
            active_owners=view.active_owners,
            role_choices=role_choices(),
            action_form=ConfirmForm(),
            undo=undo if isinstance(undo, dict) else None,
        ),
        status_code,
    )


@bp.route("/team")
@roles_required(Role.OWNER.value)
def team_list() -> Any:
    return _render_team(require_account(), AddUserForm())


def _confirm_over_limit(
    confirm: team.OverLimitConfirmation, *, verb: str, person: str, action: str, fields: dict[str, str]
) -> Any:
    """Ask before a change that takes the account beyond its plan; `verb` is «Добавить» or «Включить»."""
    suggestion = confirm.suggestion
    return render_template(
        "seats/user_confirm.html",
        title=f"{verb} пользователя сверх тарифа?",
        heading=f"{verb} пользователя сверх тарифа?",
        person=person,
        text=confirm.text,
        limits=confirm.limits,
        action=action,
        fields=fields,
        submit=f"Всё равно {verb.lower()}",
        suggestion=suggestion,
        pay_url=pay_url(suggestion.code) if suggestion is not None else None,
    )


def _add_form_valid(form: AddUserForm, account_id: int) -> bool:
    if not form.validate_on_submit():
        return False
    problem = team.crm_email_problem(get_db(), account_id, form.email.data)
    if problem:
        form.email.errors = [*form.email.errors, problem]
    return problem is None


def _add_refused(account: Account, form: AddUserForm, exc: MembershipError) -> Any:
    get_db().rollback()
    target = getattr(form, exc.field, None) if exc.field in {"phone", "name", "email", "role"} else None
    if target is not None:
        target.errors = [*target.errors, exc.message]
    else:
        form.form_errors.append(exc.message)
    return _render_team(account, form, exc.status_code)


@bp.route("/team/users", methods=["POST"])
@roles_required(Role.OWNER.value)
def user_add() -> Any:
    db = get_db()
    account = require_account()
    form = AddUserForm()
    if not _add_form_valid(form, account.id):
        return _render_team(account, form, 400)
    now = utcnow()
    confirm = team.adding_confirmation(db, account.id, form.phone.data, now)
    if confirm is not None and form.confirmed.data != "1":
        person = f"{form.name.data}, {format_phone(form.phone.data)}, {Role(form.role.data).title.lower()}"
        fields = {"phone": form.phone.data, "name": form.name.data, "role": form.role.data}
        fields["email"] = form.email.data or ""
        return _confirm_over_limit(
            confirm, verb="Добавить", person=person, action=url_for("seats.user_add"), fields=fields
        )
    data = {"phone": form.phone.data, "name": form.name.data, "email": form.email.data, "role": form.role.data}
    try:
        result = team.add_member(db, account.id, **data, actor=current_user._get_current_object(), now=now)
    except MembershipError as exc:
        return _add_refused(account, form, exc)
    db.commit()
    flash(team.added_message(result), "success")
    return redirect(url_for("seats.team_list"))


def _account_member(user_id: int) -> tuple[Account, Membership]:
    """The owner's account and its member `user_id`; 404 for anyone else's."""
    account = require_account()
    try:
        return account, get_member(get_db(), account.id, user_id)
    except UserNotFound:
        abort(404)


def _after_own_change(user_id: int) -> Any:
    """An owner who deactivated or demoted themselves no longer sees the team page: go home."""
    if user_id == current_user.id:
        return redirect(url_for("index"))
    return redirect(url_for("seats.team_list"))


def _person(membership: Membership) -> str:
    return f"{membership.name}, {format_phone(membership.user.phone)}, {membership.role_title.lower()}"


def _deactivation_page(account: Account, membership: Membership) -> Any:
    db = get_db()
    return render_template(
        "seats/user_deactivate.html",
        membership=membership,
        person=_person(membership),
        limits=get_limits(db, account.id, utcnow()),
        crm=team.connected_crm(db, account.id),
        is_self=membership.user_id == current_user.id,
    )


def _stale_form(form: Any) -> Any:
    """The redirect for a form that no longer validates (an old page, a lost CSRF token), else None."""
    if form.validate_on_submit():
        return None
    flash("Форма устарела. Обновите страницу и попробуйте ещё раз.", "error")
    return redirect(url_for("seats.team_list"))


def _act(change: Callable[..., object], done: str, then: Callable[[], Any], **kwargs: Any) -> Any:
    """Make one confirmed team change as the owner: committed and told (`done`), then `then()`; or refused, with the
    service's message, back on the team page."""
    db = get_db()
    try:
        change(db, source="portal", actor=current_user._get_current_object(), now=utcnow(), **kwargs)
    except MembershipError as exc:
        db.rollback()
        flash(exc.message, "error")
        return redirect(url_for("seats.team_list"))
    db.commit()
    flash(done, "success")
    return then()


@bp.route("/team/users/<int:user_id>/deactivate", methods=["POST"])
@roles_required(Role.OWNER.value)
def user_deactivate(user_id: int) -> Any:
    account, membership = _account_member(user_id)
    if (stale := _stale_form(ConfirmForm())) is not None:
        return stale
    if request.form.get("confirmed") != "1":
        # Not undone lightly: the person loses the messenger and, with a CRM connected, the CRM account too.
        return _deactivation_page(account, membership)

    def then() -> Any:
        if user_id != current_user.id:
            session[UNDO_KEY] = {"user_id": user_id, "name": membership.name}
        return _after_own_change(user_id)

    done = f"{membership.name} отключён(а): место освободилось."
    return _act(deactivate_user, done, then, account_id=account.id, user_id=user_id)


@bp.route("/team/users/<int:user_id>/reactivate", methods=["POST"])
@roles_required(Role.OWNER.value)
def user_reactivate(user_id: int) -> Any:
    account, membership = _account_member(user_id)
    if (stale := _stale_form(ConfirmForm())) is not None:
        return stale
    confirm = team.reactivating_confirmation(get_db(), account.id, is_active=membership.is_active, now=utcnow())
    if confirm is not None and request.form.get("confirmed") != "1":
        action = url_for("seats.user_reactivate", user_id=user_id)
        return _confirm_over_limit(confirm, verb="Включить", person=_person(membership), action=action, fields={})
    done = f"{membership.name} снова в команде."
    then = lambda: redirect(url_for("seats.team_list"))  # noqa: E731
    return _act(reactivate_user, done, then, account_id=account.id, user_id=user_id)


@bp.route("/team/users/<int:user_id>/role", methods=["POST"])
@roles_required(Role.OWNER.value)
def user_role_change(user_id: int) -> Any:
    account, membership = _account_member(user_id)
    form = RoleForm()
    if not form.validate_on_submit():
        flash("Выберите роль: владелец, бухгалтер или сотрудник.", "error")
        return redirect(url_for("seats.team_list"))
    done = f"{membership.name}: роль «{Role(form.role.data).title}»."
    then = lambda: _after_own_change(user_id)  # noqa: E731
    return _act(change_role, done, then, account_id=account.id, user_id=user_id, role=form.role.data)
