"""The sandbox acquirer's hosted pages: pay by card or ЮMoney, or refuse; and its test receipt.

Registered only when PAYMENT_PROVIDER=sandbox. The pages belong to "another site" (the acquirer), so they know
nothing of the portal's users: anyone with the payment's link may pay it, as on a real acquirer's page.
"""

from __future__ import annotations

import logging
from typing import Any

from flask import Blueprint, abort, current_app, redirect, render_template, request, url_for

from portal.accounts.access import public
from portal.payments.forms import SandboxActionForm, SandboxCardForm
from portal.payments.providers import get_provider
from portal.payments.providers.sandbox import SandboxProvider, UnknownPageAction

log = logging.getLogger(__name__)

bp = Blueprint("sandbox", __name__, url_prefix="/sandbox")

VAT_TEXTS = {1: "Без НДС", 2: "НДС 0 %", 3: "НДС 10 %", 4: "НДС 20 %", 11: "НДС 22 %"}


def _sandbox() -> SandboxProvider:
    return get_provider(current_app, "sandbox")


@bp.route("/pay/<payment_id>", methods=["GET", "POST"])
@public
def payment_pay(payment_id: str) -> Any:
    sandbox = _sandbox()
    payment = sandbox.find(payment_id)
    if payment is None:
        abort(404)
    if payment.status != "pending":
        return render_template("payments/sandbox_done.html", payment=payment)
    form = SandboxCardForm()
    status = 200
    if request.method == "POST":
        if not form.validate_on_submit():  # only the CSRF token can fail here
            abort(400, "Форма устарела. Обновите страницу.")
        card = (form.number.data or "", form.expiry.data or "", form.cvc.data or "")
        try:
            answer = sandbox.answer_page(payment_id, request.form.get("action"), *card)
        except UnknownPageAction:
            abort(400, "Выберите способ оплаты.")
        if answer.return_url is not None:
            return redirect(answer.return_url)
        getattr(form, str(answer.field)).errors, status = [answer.message], 400
    return render_template("payments/sandbox_pay.html", payment=payment, form=form, error=None), status


@bp.route("/receipt/<payment_id>")
@public
def receipt_show(payment_id: str) -> Any:
    sandbox = _sandbox()
    payment = sandbox.find(payment_id)
    if payment is None or payment.status != "succeeded":
        abort(404)
    receipt = payment.receipt or {}
    customer = receipt.get("customer") or {}
    return render_template(
        "payments/sandbox_receipt.html",
        payment=payment,
        inn=sandbox.merchant_inn,
        vat_text=VAT_TEXTS.get(int(receipt.get("vat_code", 1)), "—"),
        contact=customer.get("email") or customer.get("phone"),
        buyer_name=customer.get("full_name"),
        buyer_inn=customer.get("inn"),
    )


# --- СБП: the page a phone opens after scanning the QR code (the payer's bank app, in the sandbox) ---------------

# What the sandbox's bank app offers besides paying: a refusal by the bank, to try the portal's failure path.
SBP_DECLINE = "insufficient_funds"


@bp.route("/sbp/<payment_id>", methods=["GET", "POST"])
@public
def sbp_pay(payment_id: str) -> Any:
    """«Bank app»: the payment the QR code names, with «Оплатить» and «Отменить»; the result stays on the phone,
    while the portal's waiting page (on the computer) learns it from the webhook."""
    sandbox = _sandbox()
    payment = sandbox.find(payment_id)
    if payment is None or payment.method != "sbp":
        abort(404)
    if request.method == "POST" and payment.status == "pending":
        if not SandboxActionForm().validate_on_submit():  # only the CSRF token can fail here
            abort(400, "Форма устарела. Обновите страницу.")
        action = request.form.get("action")
        if action not in ("pay", "cancel", "decline"):
            abort(400, "Выберите: оплатить или отменить.")
        payment, changed = sandbox.complete(
            payment_id,
            method="sbp",
            cancel=action == "cancel",
            decline=SBP_DECLINE if action == "decline" else None,
        )
        if changed:
            status = sandbox.notify(payment_id)
            log.info("sandbox СБП: payment %s %s, notification answered %s", payment_id, payment.status, status)
        return redirect(url_for("sandbox.sbp_pay", payment_id=payment_id))
    return render_template("payments/sandbox_sbp.html", payment=payment)
