"""Payment providers behind one interface; `get_provider(app)` builds the configured one once per app."""

from __future__ import annotations

from typing import Any

from flask import Flask

from portal.payments.providers.base import PaymentProvider

PROVIDER_NAMES = ("sandbox", "yookassa")


def get_provider(app: Flask, name: str | None = None) -> Any:
    """The provider called `name` (default: PAYMENT_PROVIDER), built from the app's settings and kept on the app."""
    name = name or app.config["PAYMENT_PROVIDER"]
    cache: dict[str, PaymentProvider] = app.extensions.setdefault("portal.payments.providers", {})
    if name not in cache:
        cache[name] = _build(app, name)
    return cache[name]


def _build(app: Flask, name: str) -> PaymentProvider:
    cfg = app.config
    if name == "sandbox":
        from portal.payments.providers.base import vat_code_for
        from portal.payments.providers.sandbox import SandboxProvider

        return SandboxProvider(
            app.extensions["portal.db"],
            base_url=cfg["BASE_URL"],
            secret=cfg["SANDBOX_WEBHOOK_SECRET"],
            merchant=cfg["SELLER_NAME"],
            merchant_inn=cfg["SELLER_INN"],
            vat_code=vat_code_for(cfg["VAT_RATE"]),
        )
    if name == "yookassa":
        from portal.payments.providers.yookassa import YooKassaProvider

        return YooKassaProvider(
            shop_id=cfg["YOOKASSA_SHOP_ID"],
            secret_key=cfg["YOOKASSA_SECRET_KEY"],
            trusted_ips=cfg["YOOKASSA_TRUSTED_IPS"],
            check_ip=bool(cfg["YOOKASSA_CHECK_IP"]),
            vat_rate=cfg["VAT_RATE"],
            api_url=cfg.get("YOOKASSA_API_URL") or "https://api.yookassa.ru/v3",
        )
    raise LookupError(f"unknown payment provider {name!r}")
