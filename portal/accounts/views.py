"""Sign-in by phone and SMS code, registration, sign-out and the account switcher."""

from __future__ import annotations

import logging
import math
import time
from typing import Any
from urllib.parse import urlsplit

import phonenumbers
from flask import (
    Blueprint,
    abort,
    current_app,
    flash,
    make_response,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask_login import current_user, login_user, logout_user
from limits import parse as parse_limit

from portal.accounts import service
from portal.accounts.access import login_required_any, public
from portal.accounts.forms import CodeForm, EmptyForm, PhoneForm, ProfileForm, RegisterForm, SwitchAccountForm
from portal.accounts.phone import format_phone
from portal.accounts.sms import SmsError, SmsRecipientRefused, make_sms_backend
from portal.db import get_db, utcnow
from portal.extensions import limiter
from portal.seats.errors import MembershipError
from portal.seats.members import leave_account
from portal.support.email import EmailError, build_message, get_email_backend
from portal.textinput import quoted
from portal.wording import minutes_ru

log = logging.getLogger(__name__)

bp = Blueprint("accounts", __name__)


def _per_phone_limit() -> str:
    return current_app.config["SMS_SEND_LIMIT_PER_PHONE"]


def _per_ip_limit() -> str:
    return current_app.config["SMS_SEND_LIMIT_PER_IP"]


def _refuse_country(form: PhoneForm) -> bool:
    """Codes go only to the countries in SMS_ALLOWED_COUNTRIES: an international SMS costs the vendor many times a
    Russian one, and pumping them was the attack."""

    allowed = {c.strip().upper() for c in str(current_app.config["SMS_ALLOWED_COUNTRIES"]).split(",") if c.strip()}
    region = phonenumbers.region_code_for_number(phonenumbers.parse(form.phone.data, None))
    if region in allowed:
        return False
    form.phone.errors = [*form.phone.errors, "На номера этой страны мы не отправляем SMS. Обратитесь в поддержку."]
    return True


def _alert_sms_budget() -> None:
    """Tell staff once an hour that sign-in codes stopped: people cannot sign in, and it may be an attack."""
    db = get_db()
    budget = int(current_app.config["SMS_BUDGET_PER_HOUR"])
    if not service.claim_sms_budget_alert(db, now=utcnow(), budget=budget):
        return
    log.warning("SMS budget of %s codes per hour reached; codes are refused", budget)

    config = current_app.config
    try:
        message = build_message(
            sender=str(config["EMAIL_FROM"]),
            to=str(config["SUPPORT_EMAIL"]),
            subject=f"SMS-коды не отправляются: достигнут предел {budget} в час",
            body=(
                f"За последний час портал отправил {budget} SMS-кодов для входа — это предел SMS_BUDGET_PER_HOUR.\n"
                "Пока он не освободится, новые коды не отправляются и войти по SMS нельзя.\n\n"
                "Проверьте, не перебор ли это номеров (журнал действий, логи SMS-шлюза); если это настоящий "
                "наплыв людей, увеличьте SMS_BUDGET_PER_HOUR.\n"
            ),
        )
        get_email_backend().send(message)
    except EmailError as exc:
        # The audit record is kept: staff see it in the journal even if the mail did not go.
        log.warning("SMS budget alert: could not e-mail support: %s", exc)


def _safe_next(target: str | None) -> str | None:
    """Only same-site paths, so the sign-in cannot be used to redirect elsewhere."""
    if not target:
        return None
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not target.startswith("/") or target.startswith("//"):
        return None
    return target


def _take_sending_slot(phone: str) -> int | None:
    """Count one code against the per-phone and per-address sending limits, atomically in the limiter's storage
    (Redis INCR in production), right before it is sent: None if it may go, else the minutes to wait.

    Counting here rather than in the route's decorator is what makes both promises hold together: only a code that
    is about to go out counts (a mistyped number costs nothing), and two servers asked at the same moment cannot
    both see a free slot — the decorator's check-then-deduct let a fourth code through under load."""
    if not limiter.enabled:
        return None  # RATELIMIT_ENABLED=False (the access tests sign in many times)
    strategy = limiter.limiter
    checks = [
        (parse_limit(_per_phone_limit()), ("sms-code", "phone", phone)),
        (parse_limit(_per_ip_limit()), ("sms-code", "ip", request.remote_addr or "-")),
    ]
    for item, keys in checks:
        if not strategy.hit(item, *keys):
            reset_at = strategy.get_window_stats(item, *keys).reset_time
            return max(1, math.ceil((reset_at - time.time()) / 60))
    return None


def _sending_limited(form: PhoneForm, minutes: int) -> Any:
    """Over a sending limit the person gets the form back, number kept, with the wait — not a bare 429 page."""
    form.phone.data = format_phone(form.phone.data)  # as people read it, as the form shows a remembered number
    form.phone.errors = [f"Слишком много запросов кода. Новый код можно запросить через {minutes} мин."]
    return make_response(render_template("accounts/login.html", form=form), 429)


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
    if form.validate_on_submit() and not _refuse_country(form):
        phone = form.phone.data
        wait = _take_sending_slot(phone)
        if wait is not None:
            return _sending_limited(form, wait)
        try:
            service.send_code(
                get_db(),
                phone=phone,
                sms=make_sms_backend(current_app.config),
                secret=current_app.config["SECRET_KEY"],
                now=utcnow(),
                ttl_seconds=current_app.config["SMS_CODE_TTL_SECONDS"],
                budget_per_hour=int(current_app.config["SMS_BUDGET_PER_HOUR"]),
            )
        except service.SmsBudgetReached as exc:
            _alert_sms_budget()
            form.phone.errors.append(
                f"Сервис временно не отправляет коды, попробуйте через {minutes_ru(exc.minutes)} "
                f"или обратитесь в поддержку: {current_app.config['SUPPORT_PHONE']}."
            )
            return render_template("accounts/login.html", form=form), 503
        except SmsRecipientRefused as exc:
            # The number itself is refused: waiting a minute will not help, checking the digits may.
            form.phone.errors.append(
                f"SMS-шлюз не доставляет сообщения на этот номер: «{exc}». Проверьте номер или укажите другой."
            )
            return render_template("accounts/login.html", form=form), 400
        except SmsError as exc:
            form.phone.errors.append(f"Не удалось отправить SMS: {exc}. Попробуйте через минуту.")
            return render_template("accounts/login.html", form=form), 503
        session["login_phone"] = phone
        next_url = _safe_next(request.args.get("next"))
        if next_url:
            session["login_next"] = next_url
        return redirect(url_for("accounts.code"))
    status = 400 if form.errors else 200
    return render_template("accounts/login.html", form=form), status


@bp.route("/login/code", methods=["GET", "POST"])
@limiter.limit("30 per 10 minutes", methods=["POST"])
@public
def code() -> Any:
    phone = session.get("login_phone")
    if not isinstance(phone, str):
        phone = None
    if not phone:
        flash("Сначала укажите номер телефона.", "info")
        return redirect(url_for("accounts.login"))
    form = CodeForm()
    if form.validate_on_submit():
        db = get_db()
        try:
            code_id = service.verify_code(
                db,
                phone=phone,
                code=form.code.data,
                secret=current_app.config["SECRET_KEY"],
                now=utcnow(),
                max_attempts=current_app.config["SMS_CODE_MAX_ATTEMPTS"],
            )
        except service.CodeError as exc:
            form.code.errors.append(str(exc))
            return render_template("accounts/code.html", form=form, phone=phone), 400
        user = service.get_user_by_phone(db, phone)
        next_url = session.get("login_next")
        # A fresh session on sign-in: nothing from before the sign-in carries over (session fixation).
        session.clear()
        if user is None or not (service.list_memberships(db, user) or user.is_staff):
            session["verified_phone"] = phone
            session["verified_code_id"] = code_id
            if next_url:
                session["login_next"] = next_url
            return redirect(url_for("accounts.register"))
        user.last_login_at = utcnow()
        db.commit()
        _sign_in(user)
        flash(f"Здравствуйте, {user.name}!" if user.name else "Здравствуйте!", "success")
        if user.is_staff and not service.list_memberships(db, user) and "support.queue" in current_app.view_functions:
            return redirect(next_url or url_for("support.queue"))
        return redirect(next_url or url_for("index"))
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
        # The cookie is the person's to copy; the server decides that one SMS code registers one company.
        if not service.claim_registration(db, code_id=session.get("verified_code_id"), phone=phone, now=utcnow()):
            db.rollback()
            session.clear()
            flash("Код из SMS уже использован. Войдите ещё раз.", "info")
            return redirect(url_for("accounts.login"))
        reg = service.register_owner(
            db,
            phone=phone,
            name=form.name.data.strip(),
            company=form.company.data.strip(),
            email=(form.email.data or "").strip() or None,
            now=utcnow(),
        )
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
