"""Start-up checks of the payment settings: a wrong one stops the portal with a message naming it."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from portal.config import ConfigError
from portal.payments.providers import PROVIDER_NAMES
from portal.payments.providers.base import vat_code_for
from portal.payments.providers.yookassa import parse_networks


def check(config: Mapping[str, Any]) -> None:
    problems: list[str] = []
    provider = config.get("PAYMENT_PROVIDER")
    production = config.get("PORTAL_ENV") == "production"
    if provider not in PROVIDER_NAMES:
        problems.append(f"PAYMENT_PROVIDER={provider!r}: expected one of {', '.join(PROVIDER_NAMES)}")
    try:
        vat_code_for(config.get("VAT_RATE") or "")
    except ValueError as exc:
        problems.append(str(exc))
    if provider == "yookassa":
        problems.extend(_yookassa_problems(config, production))
    problems.extend(_autopay_problems(config))
    if problems:
        raise ConfigError("Payment settings: " + "; ".join(problems))


def _yookassa_problems(config: Mapping[str, Any], production: bool) -> list[str]:
    problems = []
    shop_id = str(config.get("YOOKASSA_SHOP_ID") or "")
    secret = str(config.get("YOOKASSA_SECRET_KEY") or "")
    if not shop_id.isdigit():
        problems.append("YOOKASSA_SHOP_ID must be the shop's number from the YooKassa dashboard")
    if not secret:
        problems.append("YOOKASSA_SECRET_KEY is not set")
    elif production and secret.startswith("test_"):
        problems.append("YOOKASSA_SECRET_KEY is a test key (test_…): it takes no real money; use the live_… key")
    check_ip = bool(config.get("YOOKASSA_CHECK_IP", True))
    try:
        networks = parse_networks(config.get("YOOKASSA_TRUSTED_IPS") or "")
    except ValueError as exc:
        problems.append(f"YOOKASSA_TRUSTED_IPS: {exc}")
    else:
        if check_ip and not networks:
            problems.append("YOOKASSA_TRUSTED_IPS is empty: no notification would ever be accepted")
    if not check_ip and not int(config.get("PROXY_FIX_HOPS") or 0):
        # Without the address check anyone could make the portal re-read payments on demand; that is only
        # acceptable behind a proxy that itself admits YooKassa's addresses alone.
        problems.append("YOOKASSA_CHECK_IP is off without a proxy (PROXY_FIX_HOPS=0); switch it off only behind one")
    base_url = str(config.get("BASE_URL") or "")
    if production and not base_url.startswith("https://"):
        problems.append("BASE_URL must be https:// for YooKassa (payers return there, notifications arrive there)")
    return problems


def _autopay_problems(config: Mapping[str, Any]) -> list[str]:
    from portal.payments.autopay import parse_retry_days

    problems = []
    charge = config.get("AUTOPAY_CHARGE_DAYS_BEFORE", 3)
    notice = config.get("AUTOPAY_NOTICE_DAYS_BEFORE", 5)
    if not isinstance(charge, int) or charge < 0:
        problems.append("AUTOPAY_CHARGE_DAYS_BEFORE must be a whole number of days, 0 or more")
    elif not isinstance(notice, int) or notice <= charge:
        # The rules require a warning before the charge: the owner must have at least a day to cancel.
        problems.append("AUTOPAY_NOTICE_DAYS_BEFORE must be more than AUTOPAY_CHARGE_DAYS_BEFORE")
    try:
        parse_retry_days(str(config.get("AUTOPAY_RETRY_DAYS", "0")))
    except ValueError as exc:
        problems.append(f"AUTOPAY_RETRY_DAYS: {exc}")
    return problems
