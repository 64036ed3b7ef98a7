"""The notifications page (each person chooses what they receive) and the unsubscribe link from a letter."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from flask import Blueprint, abort, current_app, flash, redirect, render_template, request, url_for
from flask_login import current_user
from wtforms import BooleanField, RadioField, SelectChoice
from wtforms.validators import ValidationError

from portal.accounts.access import current_membership, public, roles_required
from portal.accounts.forms import EmptyForm
from portal.accounts.models import Account, Membership, MembershipStatus
from portal.db import get_db, utcnow
from portal.nav import register_nav
from portal.notices import service
from portal.textinput import PortalForm

bp = Blueprint("notices", __name__, url_prefix="/notifications")

register_nav("notices.settings", "Уведомления", ("owner", "accountant"), order=80)


class ChoicesForm(PortalForm):
    """One checkbox per topic the person's role receives (fields are added per request)."""


def _choices_form(
    topics: list[str], current: dict[str, bool] | None, channels: dict[str, str] | None = None
) -> ChoicesForm:
    class _Form(ChoicesForm):
        pass

    for topic in topics:
        setattr(_Form, topic, BooleanField(service.TOPICS[topic], default=current[topic] if current else False))
        if topic in service.SMS_TOPICS:
            # How this topic comes: a reminder or a failed payment may be worth an SMS to the sign-in phone.
            setattr(
                _Form,
                f"{topic}_channel",
                RadioField(
                    "Как присылать",
                    choices=CHANNEL_CHOICES,
                    # On a POST nothing is assumed: a field not sent leaves the choice as it was.
                    default="" if channels is None else channels.get(topic, service.CHANNEL_EMAIL),
                    validate_choice=False,
                    validators=[_known_channel],
                ),
            )
    return _Form() if current is None else _Form(formdata=None)


CHANNEL_CHOICES = [
    SelectChoice(service.CHANNEL_EMAIL, "Письмом"),
    SelectChoice(service.CHANNEL_SMS, "SMS на телефон входа"),
]


def _known_channel(form: ChoicesForm, field: RadioField) -> None:
    # Not sent at all (an older page): the choice stays as it was; anything else but the two ways is refused.
    if field.data not in (None, "", *(c.value for c in CHANNEL_CHOICES)):
        raise ValidationError("Выберите, как присылать: письмом или SMS.")


@bp.route("", methods=["GET", "POST"])
@roles_required("owner", "accountant")
def settings() -> Any:
    membership = current_membership()
    assert membership is not None
    page = service.settings_page(get_db(), membership)
    if request.method == "POST":
        form = _choices_form(page.topics, None)
        if form.validate_on_submit():
            service.save_settings(get_db(), membership, form.data, utcnow())
            flash("Настройки уведомлений сохранены.", "success")
            return redirect(url_for("notices.settings"))
        status = 400
    else:
        form, status = _choices_form(page.topics, page.choices, page.channels), 200
    return (
        render_template(
            "notices/settings.html",
            form=form,
            topics=page.topics,
            email=membership.email,
            phone=membership.user.phone,
            sms_topics=service.SMS_TOPICS,
            sent=page.sent,
        ),
        status,
    )


def _unsubscribe_target(token: str) -> tuple[service.Unsubscribe, Account]:
    request_ = service.read_unsubscribe_token(current_app.config["SECRET_KEY"], token)
    if request_ is None:
        abort(404)
    db = get_db()
    membership = db.scalars(
        sa.select(Membership).where(
            Membership.account_id == request_.account_id, Membership.user_id == request_.user_id
        )
    ).first()
    if membership is None or membership.status != MembershipStatus.ACTIVE.value:
        abort(404)
    return request_, membership.account


@bp.route("/unsubscribe/<token>", methods=["GET", "POST"])
@public
def unsubscribe(token: str) -> Any:
    """Works without signing in: the signed token says who and what; a GET only asks, the POST switches off."""
    target, account = _unsubscribe_target(token)
    form = EmptyForm()
    done = False
    if request.method == "POST":
        if not form.validate_on_submit():
            abort(400)
        service.unsubscribe(get_db(), target, utcnow())
        get_db().commit()
        done = True
    return render_template(
        "notices/unsubscribe.html",
        form=form,
        topic=service.TOPICS[target.topic],
        company=account.name,
        done=done,
        signed_in=current_user.is_authenticated,
    )
