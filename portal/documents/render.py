"""Printed accounting documents: the invoice (счёт на оплату) and the УПД as PDF via WeasyPrint.

Templates live in the repository's ``invoices/`` folder and receive a plain dict (never ORM
objects), so a document can be rendered from data alone, e.g. by a test or the CLI. Every
amount in the context is integer kopecks; every date is a ``datetime.date``. The render
functions never compute money: totals, VAT, the amount in words and the payment QR code
arrive precomputed (see ``words.py`` and ``qr.py``).

Invoice context (``render_invoice_pdf``)::

    number: str                      # "2026-000123"
    date: date                       # date of issue
    due_date: date                   # pay by
    valid_until: date                # «Счёт действителен до …»
    seller: {name, inn, kpp, ogrn, address, bank_name, bik, corr_account, account,
             director, accountant}   # director/accountant as «Фамилия И. О.»
    buyer: {kind: "org" | "ip", name, inn, kpp (org only, else None/""), address}
    basis: str                       # «Лицензионный договор (оферта) ред. 2026-01 от 01.01.2026»
    lines: [{name, quantity: int, unit: str, unit_code: str, price: int,
             discount: int, amount: int}]   # amount = price × quantity − discount
    subtotal: int                    # Σ price × quantity
    discount: int                    # Σ discount
    total: int                       # to pay (VAT, if any, is included)
    vat: {exempt: bool, rate: int | None, amount: int, basis_text: str}
    amount_in_words: str             # «Восемь тысяч четыреста шестьдесят четыре рубля 50 копеек»
    purpose: str                     # «Оплата по счёту № … от …, без налога (НДС)»
    qr_data_uri: str                 # "data:image/png;base64,…" (payment QR, ГОСТ Р 56042)

УПД context (``render_upd_pdf``; ``upd_xml.build_upd_xml`` takes the same dict plus the
keys marked XML)::

    number: str; date: date          # line (1)
    correction: {number, date} | None                     # line (1а)
    seller: {name, inn, kpp, address, director, accountant}   # lines (2)–(2б)
    buyer: {kind: "org" | "ip", name, inn, kpp, address,
            last_name?, first_name?, middle_name?}      # lines (6)–(6б); the FIO parts are
                                                        # for an ИП in the XML
    payment_docs: [{number, date, amount?: int}]        # line (5), from the bank statement
    advance_invoices: [{number, date}]                  # line (5б), usually []
    gov_contract_id: str | None                         # line (8)
    lines: [{name, code?: str, kind_code?: str, unit_code: str, unit: str,
             quantity: int, price: int,                 # price without VAT, per unit
             amount_without_vat: int, vat_amount: int, amount: int}]
    total_without_vat: int; total: int
    vat: {exempt: bool, rate: int | None, amount: int, basis_text: str}
                                                        # exempt → status 2, else status 1
    basis: {name, number, date}                         # [8], e.g. the accepted licence offer
    transport: str | None                               # [9]
    transferred_by: {position, name}                    # [10]
    shipment_date: date                                 # [11]
    other_info: str | None                              # [12]
    responsible: {position, name}                       # [13]
    composer: str                                       # [14] «ООО «…», ИНН/КПП …/…»
    XML: created_at: datetime (aware), edo: {sender_id, recipient_id, guid},
         signer: {last_name, first_name, middle_name, position}, operation: str (СодОпер)
"""

from __future__ import annotations

import gc
import mimetypes
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import date, datetime, time
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit
from urllib.request import url2pathname

import jinja2
from weasyprint import CSS, HTML
from weasyprint.document import Document
from weasyprint.text.fonts import FontConfiguration
from weasyprint.urls import FatalURLFetchingError, URLFetcher, URLFetcherResponse

from portal.money import format_amount
from portal.timeutil import format_date_ru
from portal.wording import plural_ru

INVOICES_DIR = Path(__file__).resolve().parents[2] / "invoices"

NBSP = "\u00a0"


class ForbiddenResourceError(ValueError):
    """A document asked for something outside ``invoices/`` (or a non-``data:`` URL)."""


class DocumentRenderError(RuntimeError):
    """Rendering stopped because the template referenced a resource it may not load."""


def rub(kopecks: int) -> str:
    """Format integer kopecks as «1 990,00»: digits grouped by NBSP, comma before kopecks."""
    if isinstance(kopecks, bool) or not isinstance(kopecks, int):
        raise TypeError(f"amount must be int kopecks, got {type(kopecks).__name__}")
    return format_amount(kopecks)


def _as_date(value: date | datetime) -> date:
    return value.date() if isinstance(value, datetime) else value


def date_ru(value: date | datetime) -> str:
    """«25 ноября 2026 г.» — the long date used in document titles."""
    return format_date_ru(_as_date(value), space=NBSP)


def date_dot(value: date | datetime) -> str:
    """«25.11.2026» — the short date used in requisites and tables."""
    return _as_date(value).strftime("%d.%m.%Y")


def _sheets_word(count: int) -> str:
    """«1 листе», «2 листах» — the locative after «Документ составлен на»."""
    return f"{count}{NBSP}{plural_ru(count, 'листе', 'листах', 'листах')}"


def _make_env() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(INVOICES_DIR),
        autoescape=True,
        # A missing context key must fail loudly: a blank ИНН on an accounting document is worse
        # than no document.
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["rub"] = rub
    env.filters["date_ru"] = date_ru
    env.filters["date_dot"] = date_dot
    env.filters["sheets"] = _sheets_word
    return env


ENV = _make_env()


class LocalOnlyURLFetcher(URLFetcher):
    """Serves files under one folder and ``data:`` URIs; refuses everything else.

    A document must look the same on every server and must never reach the network (the QR
    code arrives as a ``data:`` URI), so any other URL is an error that stops rendering.
    """

    def __init__(self, root: Path = INVOICES_DIR) -> None:
        super().__init__(allowed_protocols={"file", "data"}, allow_redirects=False, fail_on_errors=True)
        self.root = root.resolve()

    def fetch(self, url: str, headers: Mapping[str, str] | None = None) -> URLFetcherResponse:
        scheme = url.split(":", 1)[0].lower() if ":" in url else ""
        if scheme == "data":
            # urllib's DataHandler decodes it in memory; nothing is opened.
            return super().fetch(url, headers)
        if scheme != "file":
            raise ForbiddenResourceError(f"Документ не может загружать внешние ресурсы: {url}")
        parts = urlsplit(url)
        if parts.netloc not in ("", "localhost"):
            raise ForbiddenResourceError(f"Документ не может загружать внешние ресурсы: {url}")
        path = Path(url2pathname(unquote(parts.path))).resolve()
        if not path.is_relative_to(self.root) or not path.is_file():
            raise ForbiddenResourceError(f"Файл вне папки шаблонов документов: {url}")
        mime_type = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        return URLFetcherResponse(path.as_uri(), path.read_bytes(), {"Content-Type": mime_type})


# The stylesheets of each template, in cascade order. They are passed to WeasyPrint already parsed (see
# `_shared`), so the templates do not link them.
STYLESHEETS: dict[str, tuple[str, ...]] = {
    "invoice.html": ("print.css",),
    "upd.html": ("print.css", "upd.css"),
    "ukd.html": ("print.css", "upd.css"),
    "advance.html": ("print.css", "upd.css"),
    "reconciliation.html": ("print.css",),
}


def stylesheet_paths(template_name: str) -> list[Path]:
    return [INVOICES_DIR / name for name in STYLESHEETS[template_name]]


class _Shared:
    """The stylesheets and their @font-face fonts, parsed once per process and reused by every document.

    Parsing print.css and upd.css and loading four font files cost about a tenth of each render when done per
    document. Pango's font map is not safe to share between threads, so rendering with it is serialised by `lock`
    (a render is CPU-bound Python anyway: two threads would not render faster).
    """

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self._fonts: FontConfiguration | None = None
        self._sheets: dict[str, CSS] = {}

    def stylesheets(self, template_name: str) -> tuple[FontConfiguration, list[CSS]]:
        with self.lock:
            if self._fonts is None:
                self._fonts = FontConfiguration()
            fonts = self._fonts
            sheets = []
            for name in STYLESHEETS[template_name]:
                if name not in self._sheets:
                    self._sheets[name] = CSS(
                        filename=str(INVOICES_DIR / name), font_config=fonts, url_fetcher=LocalOnlyURLFetcher()
                    )
                sheets.append(self._sheets[name])
            return fonts, sheets


_SHARED = _Shared()

# A tiny page with every stylesheet and font: rendering it loads WeasyPrint's own lazy parts (Pango, HarfBuzz, the
# user-agent stylesheet, PDF writer) and the shared stylesheets, so a worker's first real document is not the slow one.
_WARM_UP_PAGE = """<!doctype html><html lang="ru"><head><meta charset="utf-8"></head><body>
<div class="invoice"><h1>Счёт</h1><table class="items"><tr><td>1</td><td class="num"><b>1&nbsp;990,00</b></td></tr></table></div>
<div class="upd"><table class="goods"><tr><td>1</td><td class="num">1&nbsp;990,00</td></tr></table>
<table class="lines"><col class="l-label"><tr><th class="label">Прогрев</th><td class="value strong">1</td></tr></table></div>
</body></html>"""


def warm_up() -> None:
    """Parse the shared stylesheets and fonts and render a tiny page: call once in a worker before its requests."""
    with _SHARED.lock:
        fonts, sheets = _SHARED.stylesheets("upd.html")
        HTML(string=_WARM_UP_PAGE, base_url=INVOICES_DIR.as_uri() + "/", url_fetcher=LocalOnlyURLFetcher()).write_pdf(
            stylesheets=sheets, font_config=fonts
        )


def _pdf_meta(issued: date) -> str:
    """The W3C timestamp WeasyPrint copies into the PDF's CreationDate/ModDate."""
    return datetime.combine(issued, time(0, 0)).strftime("%Y-%m-%dT%H:%M:%S+03:00")


def _layout(template_name: str, context: Mapping[str, Any]) -> Document:
    html = ENV.get_template(template_name).render(context)
    fonts, sheets = _SHARED.stylesheets(template_name)
    return HTML(string=html, base_url=INVOICES_DIR.as_uri() + "/", url_fetcher=LocalOnlyURLFetcher()).render(
        stylesheets=sheets, font_config=fonts
    )


@contextmanager
def _no_collection() -> Iterator[None]:
    """No cyclic garbage collection while WeasyPrint builds a document.

    A render allocates tens of thousands of boxes and styles, enough to start several collections that walk every
    object of the process (the app, SQLAlchemy, the shared stylesheets), while most of the render's own objects are
    freed by reference counting when it ends; the rest, in cycles (about 7 000 objects of a УПД), go at a later
    collection. Measured: 2-5 % of an invoice's or a УПД's render. Renders are serialised by `_SHARED.lock`, and the
    previous state is restored (a caller that had switched collection off keeps it off).
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _render_pdf(template_name: str, ctx: Mapping[str, Any], *, count_sheets: bool = False) -> bytes:
    # The document date goes into dcterms.created/modified and the identifier is derived from the
    # document number, so the PDF never carries "now" and the same context gives the same bytes.
    context: dict[str, Any] = {**ctx, "pdf_date": _pdf_meta(ctx["date"]), "sheets": 1}
    identifier = f"{template_name}:{ctx['number']}".encode()
    try:
        with _SHARED.lock, _no_collection():
            document = _layout(template_name, context)
            if count_sheets and len(document.pages) != context["sheets"]:
                # «Документ составлен на N листах» is known only after layout: lay out once more.
                document = _layout(template_name, {**context, "sheets": len(document.pages)})
            return document.write_pdf(pdf_identifier=identifier)
    except FatalURLFetchingError as error:  # a BaseException in WeasyPrint; callers expect Exception
        cause = error.__cause__
        raise DocumentRenderError(str(cause or error)) from cause


def render_invoice_pdf(ctx: Mapping[str, Any]) -> bytes:
    """Render the invoice (счёт на оплату), A4 portrait; ``ctx`` shape is in the module docstring."""
    return _render_pdf("invoice.html", ctx)


def upd_status(ctx: Mapping[str, Any]) -> int:
    """1 — счёт-фактура and transfer document (VAT charged); 2 — transfer document only."""
    return 2 if ctx["vat"]["exempt"] else 1


def render_upd_pdf(ctx: Mapping[str, Any]) -> bytes:
    """Render the УПД on the FNS-recommended form (2026 edition), A4 landscape.

    The status is derived from ``ctx["vat"]["exempt"]`` so the box can never disagree with the
    tax columns; ``ctx`` shape is in the module docstring.
    """
    return _render_pdf("upd.html", {**ctx, "status": upd_status(ctx)}, count_sheets=True)


def render_ukd_pdf(ctx: Mapping[str, Any]) -> bytes:
    """Render the УКД (корректировочный документ) after a refund of documented rights, A4 landscape."""
    return _render_pdf("ukd.html", {**ctx, "status": upd_status(ctx)}, count_sheets=True)


def render_advance_pdf(ctx: Mapping[str, Any]) -> bytes:
    """Render the счёт-фактура на аванс, A4 landscape."""
    return _render_pdf("advance.html", ctx, count_sheets=True)


def render_reconciliation_pdf(ctx: Mapping[str, Any]) -> bytes:
    """Render the акт сверки, A4 portrait: the seller's columns filled, the buyer's left for the buyer."""
    return _render_pdf("reconciliation.html", ctx)
