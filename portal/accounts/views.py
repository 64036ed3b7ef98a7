"""Sign-in by phone and SMS code, registration, sign-out and the account switcher."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from flask import (
    Blueprint,
    abort,
    current_app,
    flash,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask_login import current_user, login_user, logout_user

from portal.accounts import service, signin
from portal.accounts.access import login_required_any, public
from portal.accounts.forms import CodeForm, EmptyForm, PhoneForm, ProfileForm, RegisterForm, SwitchAccountForm
from portal.accounts.phone import format_phone
from portal.db import get_db, utcnow
from portal.extensions import limiter
from portal.seats.errors import MembershipError
from portal.seats.members import leave_account
from portal.textinput import quoted

bp = Blueprint("accounts", __name__)


def _safe_next(target: str | None) -> str | None:
    """Only same-site paths, so the sign-in cannot be used to redirect elsewhere."""
    if not target:
        return None
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not target.startswith("/") or target.startswith("//"):
        return None
    return target


@bp.route("/login", methods=["GET", "POST"])
@public
def login() -> Any:
    if current_user.is_authenticated:
        return redirect(url_for("index"))
    form = PhoneForm()
    remembered = session.get("login_phone")
    if request.method == "GET" and isinstance(remembered, str):
        # «Другой номер или новый код» comes back here: the number stays filled in, to resend or to correct.
        form.phone.data = format_phone(remembered)
    if form.validate_on_submit():
        phone = form.phone.data
        sent = signin.request_code(get_db(), phone=phone, remote_addr=request.remote_addr, config=current_app.config)
        if sent.error is None:
            session["login_phone"] = phone
            if next_url := _safe_next(request.args.get("next")):
                session["login_next"] = next_url
            return redirect(url_for("accounts.code"))
        if sent.reformat:
            form.phone.data = format_phone(phone)  # as people read it, as the form shows a remembered number
        form.phone.errors = [*form.phone.errors, sent.error]
        return render_template("accounts/login.html", form=form), sent.status
    status = 400 if form.errors else 200
    return render_template("accounts/login.html", form=form), status


@bp.route("/login/code", methods=["GET", "POST"])
@limiter.limit("30 per 10 minutes", methods=["POST"])
@public
def code() -> Any:
    phone = session.get("login_phone")
    if not phone or not isinstance(phone, str):
        flash("Сначала укажите номер телефона.", "info")
        return redirect(url_for("accounts.login"))
    form = CodeForm()
    if form.validate_on_submit():
        checked = signin.check_code(get_db(), phone=phone, code=form.code.data, config=current_app.config)
        if checked.error is not None:
            form.code.errors.append(checked.error)
            return render_template("accounts/code.html", form=form, phone=phone), 400
        next_url = session.get("login_next")
        session.clear()  # a fresh session on sign-in: nothing from before carries over (session fixation)
        if checked.user is None:
            session.update(verified_phone=phone, verified_code_id=checked.code_id)
            if next_url:
                session["login_next"] = next_url
            return redirect(url_for("accounts.register"))
        _sign_in(checked.user)
        flash(f"Здравствуйте, {checked.user.name}!" if checked.user.name else "Здравствуйте!", "success")
        staff_home = checked.staff_only and "support.queue" in current_app.view_functions
        return redirect(next_url or url_for("support.queue" if staff_home else "index"))
    status = 400 if form.errors else 200
    return render_template("accounts/code.html", form=form, phone=phone), status


@bp.route("/register", methods=["GET", "POST"])
@public
def register() -> Any:
    phone = session.get("verified_phone")
    if not phone:
        flash("Сначала подтвердите номер телефона кодом из SMS.", "info")
        return redirect(url_for("accounts.login"))
    db = get_db()
    existing = service.get_user_by_phone(db, phone)
    form = RegisterForm(obj=existing) if request.method == "GET" and existing else RegisterForm()
    if form.validate_on_submit():
        name, company, email = form.name.data, form.company.data, form.email.data or ""
        code_id = session.get("verified_code_id")
        reg = signin.register(db, phone=phone, code_id=code_id, name=name, company=company, email=email)
        if reg is None:
            session.clear()
            flash("Код из SMS уже использован. Войдите ещё раз.", "info")
            return redirect(url_for("accounts.login"))
        next_url = session.get("login_next")
        session.clear()
        _sign_in(reg.user)
        session["account_id"] = reg.account.id
        flash(f"Компания {quoted(reg.account.name)} создана. Вы — её владелец, тариф бесплатный.", "success")
        return redirect(next_url or url_for("index"))
    status = 400 if form.errors else 200
    return render_template("accounts/register.html", form=form, phone=phone), status


@bp.post("/logout")
@login_required_any
def logout() -> Any:
    form = EmptyForm()
    if not form.validate_on_submit():
        abort(400)
    service.end_session(get_db(), token=session.get("sid"), now=utcnow())
    logout_user()
    session.clear()
    flash("Вы вышли из кабинета.", "info")
    return redirect(url_for("accounts.login"))


def _sign_in(user: Any) -> None:
    """Flask-Login's sign-in plus a server-side session record, so that signing out can end it."""
    session["sid"] = service.start_session(get_db(), user=user, now=utcnow())
    login_user(user)


@bp.post("/account/switch")
@login_required_any
def account_switch() -> Any:
    form = SwitchAccountForm()
    raw = str(form.account_id.data or "")
    if not form.validate_on_submit() or not (raw.isascii() and raw.isdigit()):
        abort(400)
    account_id = int(raw)
    # An id beyond the INTEGER column is simply nobody's account (and would overflow the driver).
    membership = service.get_membership(get_db(), current_user, account_id) if account_id < 2**31 else None
    if membership is None:
        abort(404)
    session["account_id"] = membership.account_id
    service.mark_seen(get_db(), membership, utcnow())
    flash(f"Вы работаете с компанией {quoted(membership.account.name)}.", "info")
    return redirect(url_for("index"))


@bp.route("/profile", methods=["GET", "POST"])
@login_required_any
def profile() -> Any:
    """The person's own page: their name and e-mail, their companies (leave one), sign-out everywhere."""
    db = get_db()
    user = current_user._get_current_object()
    form = ProfileForm(obj=user) if request.method == "GET" else ProfileForm()
    if form.validate_on_submit():
        service.update_profile(db, user=user, name=form.name.data.strip(), email=(form.email.data or "").strip())
        flash("Профиль сохранён.", "success")
        return redirect(url_for("accounts.profile"))
    status = 400 if form.errors else 200
    memberships = service.list_memberships(db, user)
    return render_template("accounts/profile.html", form=form, memberships=memberships, action_form=EmptyForm()), status


@bp.post("/profile/sessions/end")
@login_required_any
def sessions_end() -> Any:
    if not EmptyForm().validate_on_submit():
        abort(400)
    service.end_all_sessions(get_db(), user=current_user._get_current_object(), now=utcnow())
    logout_user()
    session.clear()
    flash("Вы вышли на всех устройствах. Войдите снова.", "info")
    return redirect(url_for("accounts.login"))


@bp.post("/account/leave")
@login_required_any
def account_leave() -> Any:
    form = SwitchAccountForm()
    raw = str(form.account_id.data or "")
    if not form.validate_on_submit() or not (raw.isascii() and raw.isdigit() and len(raw) < 10):
        abort(400)
    db = get_db()
    membership = service.get_membership(db, current_user, int(raw))
    if membership is None:
        abort(404)
    name = membership.account.name
    try:
        leave_account(db, account_id=membership.account_id, user=current_user._get_current_object(), now=utcnow())
    except MembershipError as exc:
        db.rollback()
        flash(exc.message, "error")
        return redirect(url_for("accounts.profile"))
    db.commit()
    if session.get("account_id") == membership.account_id:
        session.pop("account_id", None)
    flash(f"Вы покинули компанию {quoted(name)}.", "success")
    return redirect(url_for("accounts.profile"))
