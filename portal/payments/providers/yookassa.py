"""YooKassa through its official SDK: redirect payments with 54-ФЗ receipts, re-reading, IP-checked notifications."""

from __future__ import annotations

import ipaddress
import json
import logging
from collections.abc import Callable, Iterable, Mapping
from typing import Any, TypeVar

import requests
from requests.adapters import HTTPAdapter
from urllib3 import Retry
from yookassa import Configuration
from yookassa import Payment as SdkPayment
from yookassa import Refund as SdkRefund
from yookassa.client import ApiClient
from yookassa.domain.exceptions import (
    ApiError,
    InternalServerError,
    NotFoundError,
    ResponseProcessingError,
    TooManyRequestsError,
)

from portal.payments.providers.base import (
    PAYMENT_ID_RE,
    Customer,
    NotificationEvent,
    NotificationRejected,
    PaymentInfo,
    PaymentNotFound,
    ProviderError,
    ProviderRejected,
    ProviderUnavailable,
    amount_value,
    parse_amount_value,
    parse_notification_body,
    payment_description,
    payment_info_from_object,
    vat_code_for,
)

log = logging.getLogger(__name__)

API_URL = "https://api.yookassa.ru/v3"

# Признак предмета расчёта (tag 1212). The seller sells access to its messenger for a paid period under the
# published licence agreement, and the receipt describes it as such a service; "intellectual_activity" would fit
# a sale of rights to a result of intellectual activity as such. The seller's accountant owns this choice, so it
# is one named constant, used only here.
PAYMENT_SUBJECT = "service"
# Признак способа расчёта (tag 1214): the whole period is paid before it starts.
PAYMENT_MODE = "full_prepayment"

# (connect, read) seconds. The SDK itself sets no time-out at all, so a hung connection would hold a worker forever.
DEFAULT_TIMEOUT: tuple[float, float] = (5.0, 20.0)

T = TypeVar("T")


def parse_networks(spec: str | Iterable[str]) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    """ "185.71.76.0/27,77.75.156.11" → networks; a bad entry raises ValueError naming it."""
    items = spec.split(",") if isinstance(spec, str) else list(spec)
    networks = []
    for item in items:
        item = item.strip()
        if not item:
            continue
        try:
            networks.append(ipaddress.ip_network(item, strict=False))
        except ValueError:
            raise ValueError(f"not an IP network: {item!r}") from None
    return networks


def _sdk_payment_class(timeout: tuple[float, float], base: type[Any] = SdkPayment) -> type[Any]:
    """The SDK's Payment (or Refund), with an HTTP client that has a time-out (the SDK's own has none)."""

    class _Session(requests.Session):
        def request(self, *args: Any, **kwargs: Any) -> requests.Response:  # type: ignore[override]
            kwargs.setdefault("timeout", timeout)
            return super().request(*args, **kwargs)

    class _Client(ApiClient):
        def get_session(self) -> requests.Session:
            session = _Session()
            # The SDK's retry policy, kept: it repeats a POST that YooKassa answered 202 (still processing).
            retries = Retry(
                total=self.max_attempts,
                backoff_factor=self.timeout / 1000,
                allowed_methods=["POST"],
                status_forcelist=[202],
            )
            session.mount("https://", HTTPAdapter(max_retries=retries))
            return session

    class _Api(base):  # type: ignore[misc, valid-type]
        def __init__(self) -> None:
            self.client = _Client()

    return _Api


class YooKassaProvider:
    name = "yookassa"

    def __init__(
        self,
        *,
        shop_id: str,
        secret_key: str,
        trusted_ips: str | Iterable[str],
        check_ip: bool = True,
        vat_rate: str = "",
        api_url: str = API_URL,
        timeout: tuple[float, float] = DEFAULT_TIMEOUT,
    ) -> None:
        self.shop_id = str(shop_id)
        self._secret_key = secret_key
        self.networks = parse_networks(trusted_ips)
        self.check_ip = check_ip
        self.vat_code = vat_code_for(vat_rate)
        self.api_url = api_url
        self._payment_api = _sdk_payment_class(timeout)
        self._refund_api = _sdk_payment_class(timeout, SdkRefund)

    def __repr__(self) -> str:  # never show the secret key in logs or tracebacks
        return f"<YooKassaProvider shop {self.shop_id}>"

    # --- PaymentProvider -------------------------------------------------------------------------------------

    def payment_request(self, order: Any, return_url: str, customer: Customer) -> dict[str, Any]:
        """The body of POST /v3/payments for an order."""
        value = amount_value(order.amount)
        description = payment_description(order)
        if not customer.email and not customer.phone:
            raise ProviderRejected("Для чека нужен e-mail или телефон покупателя.")
        receipt_customer = customer.receipt_customer()
        return {
            "amount": {"value": value, "currency": "RUB"},
            "capture": True,
            "confirmation": {"type": "redirect", "return_url": return_url},
            "description": description,
            "metadata": {"order_id": str(order.id), "account_id": str(order.account_id)},
            "receipt": {
                "customer": receipt_customer,
                "items": [
                    {
                        "description": description,
                        "quantity": "1.00",
                        "amount": {"value": value, "currency": "RUB"},
                        "vat_code": self.vat_code,
                        "payment_subject": PAYMENT_SUBJECT,
                        "payment_mode": PAYMENT_MODE,
                    }
                ],
            },
        }

    def create_payment(
        self,
        order: Any,
        return_url: str,
        idempotence_key: str,
        customer: Customer,
        *,
        save_payment_method: bool = False,
    ) -> tuple[str, str]:
        params = self.payment_request(order, return_url, customer)
        payment_id, confirmation = self._create(params, idempotence_key, save_payment_method)
        url = confirmation.get("confirmation_url")
        if not url:
            # A repeated key returns the same payment; once it is paid or canceled there is nothing to confirm.
            raise ProviderRejected("Этот платёж уже завершён в ЮKassa.")
        return payment_id, url

    def _create(
        self, params: dict[str, Any], idempotence_key: str, save_payment_method: bool
    ) -> tuple[str, dict[str, Any]]:
        """POST /v3/payments (a repeated key returns the same payment): its id and what the payer confirms with."""
        if save_payment_method:
            params["save_payment_method"] = True  # autopayment: the owner consented at checkout
        response = self._call(lambda api: api.create(params, idempotence_key))
        obj = json.loads(response.json())
        payment_id = obj.get("id")
        if not isinstance(payment_id, str) or not PAYMENT_ID_RE.match(payment_id):
            raise ProviderError("ЮKassa вернула платёж без идентификатора.")
        return payment_id, obj.get("confirmation") or {}

    def charge_saved(self, order: Any, method_id: str, idempotence_key: str, customer: Customer) -> PaymentInfo:
        """An autopayment: the saved method charged without the payer (no confirmation); the answer is the payment
        as it stands (usually settled at once; a pending one is re-read by the tick like any other)."""
        params = self.payment_request(order, "", customer)
        del params["confirmation"]
        params["payment_method_id"] = method_id
        response = self._call(lambda api: api.create(params, idempotence_key))
        return payment_info_from_object(json.loads(response.json()))

    # --- СБП (Faster Payments) -----------------------------------------------------------------------------------

    def sbp_payment_request(self, order: Any, return_url: str, customer: Customer) -> dict[str, Any]:
        """The body of POST /v3/payments for СБП: the same order and receipt, paid by a QR code the payer scans with
        the bank's app (`confirmation_data` in the answer is what the QR encodes; on a phone it opens the app)."""
        return self.payment_request(order, return_url, customer) | {
            "payment_method_data": {"type": "sbp"},
            "confirmation": {"type": "qr", "return_url": return_url},
        }

    def create_sbp_payment(
        self,
        order: Any,
        return_url: str,
        idempotence_key: str,
        customer: Customer,
        *,
        save_payment_method: bool = False,
    ) -> tuple[str, str]:
        """Create (or, for a repeated key, find) an СБП payment: (provider_payment_id, the QR's data). Saving binds
        the payer's bank account for autopayment, as with a card."""
        params = self.sbp_payment_request(order, return_url, customer)
        payment_id, confirmation = self._create(params, idempotence_key, save_payment_method)
        data = confirmation.get("confirmation_data")
        if not data:
            raise ProviderRejected("Этот платёж уже завершён в ЮKassa.")
        return payment_id, str(data)

    def refund_request(self, provider_payment_id: str, amount: int, customer: Customer) -> dict[str, Any]:
        """The body of POST /v3/refunds: the money back, with the 54-ФЗ refund receipt."""
        value = amount_value(amount)
        receipt_customer = (
            {"email": customer.email} if customer.email else {"phone": (customer.phone or "").lstrip("+")}
        )
        return {
            "payment_id": provider_payment_id,
            "amount": {"value": value, "currency": "RUB"},
            "description": "Возврат неиспользованного остатка на балансе",
            "receipt": {
                "customer": receipt_customer,
                "items": [
                    {
                        "description": "Возврат оплаты лицензии на корпоративный мессенджер",
                        "quantity": "1.00",
                        "amount": {"value": value, "currency": "RUB"},
                        "vat_code": self.vat_code,
                        "payment_subject": PAYMENT_SUBJECT,
                        "payment_mode": PAYMENT_MODE,
                    }
                ],
            },
        }

    def refund(self, provider_payment_id: str, amount: int, idempotence_key: str, customer: Customer) -> str:
        params = self.refund_request(provider_payment_id, amount, customer)
        response = self._call(lambda api: api.create(params, idempotence_key), self._refund_api)
        obj = json.loads(response.json())
        refund_id = obj.get("id")
        if not isinstance(refund_id, str) or obj.get("status") == "canceled":
            raise ProviderRejected("ЮKassa не приняла возврат.")
        return refund_id

    def get_refund(self, refund_id: str) -> tuple[str, int, str]:
        """(payment id, kopecks, status) of a refund, read through the API: a notification is only a hint."""
        if not PAYMENT_ID_RE.match(refund_id or ""):
            raise PaymentNotFound("Возврат не найден.")
        response = self._call(lambda api: api.find_one(refund_id), self._refund_api)
        obj = json.loads(response.json())
        return (
            str(obj.get("payment_id") or ""),
            parse_amount_value((obj.get("amount") or {}).get("value")),
            str(obj.get("status") or ""),
        )

    def get_payment(self, provider_payment_id: str) -> PaymentInfo:
        if not PAYMENT_ID_RE.match(provider_payment_id or ""):
            raise PaymentNotFound("Платёж не найден.")
        response = self._call(lambda api: api.find_one(provider_payment_id))
        return payment_info_from_object(json.loads(response.json()))

    def parse_notification(self, body: bytes, headers: Mapping[str, str], remote_addr: str | None) -> NotificationEvent:
        # YooKassa does not sign notifications: the source address is the check, and the body is only a hint
        # which payment to re-read through the API.
        if self.check_ip and not self.is_trusted(remote_addr):
            raise NotificationRejected(403, "Уведомление пришло не с адреса ЮKassa.")
        return parse_notification_body(self.name, body)

    def is_trusted(self, remote_addr: str | None) -> bool:
        if not remote_addr:
            return False
        try:
            ip = ipaddress.ip_address(remote_addr)
        except ValueError:
            return False
        return any(ip in net for net in self.networks)

    # --- SDK calls ------------------------------------------------------------------------------------------------

    def _call(self, fn: Callable[[type[Any]], T], api: type[Any] | None = None) -> T:
        # The SDK keeps its settings in class attributes: set them before every call so that two apps in one
        # process (tests) never talk to YooKassa with each other's shop.
        Configuration.configure(self.shop_id, self._secret_key, api_url=self.api_url)
        try:
            return fn(api or self._payment_api)
        except requests.RequestException as exc:
            raise ProviderUnavailable("ЮKassa не ответила") from exc
        except AttributeError as exc:
            # The SDK (3.x) handles a transport error by reading its `.response`, which is None for a time-out or
            # a refused connection; what is really wrong is the transport error it was handling.
            cause = exc.__context__
            if isinstance(cause, requests.RequestException):
                raise ProviderUnavailable(f"ЮKassa не ответила: {type(cause).__name__}") from cause
            raise
        except NotFoundError as exc:
            raise PaymentNotFound("ЮKassa не знает такого платежа.") from exc
        except (InternalServerError, TooManyRequestsError, ResponseProcessingError) as exc:
            raise ProviderUnavailable(f"ЮKassa временно недоступна: {_describe(exc)}") from exc
        except ApiError as exc:
            raise ProviderRejected(f"ЮKassa отклонила запрос: {_describe(exc)}") from exc


def _describe(exc: ApiError) -> str:
    content = exc.content or {}
    parts = [str(content.get(k)) for k in ("code", "description", "parameter") if content.get(k)]
    return "; ".join(parts) or type(exc).__name__
