"""Periods of the documents page (a month, a quarter, a year) and the ZIP of a period's documents."""

from __future__ import annotations

import io
import re
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from portal.documents.listing import ARCHIVE_FOLDERS, list_documents
from portal.documents.models import AdvanceInvoice, Invoice, Ukd, Upd
from portal.documents.service import _config, get_file, read_file
from portal.timeutil import MSK, format_month_ru

_PERIOD = re.compile(r"(?P<year>20[0-9]{2})(?:-(?:(?P<month>0[1-9]|1[0-2])|Q(?P<quarter>[1-4])))?")


@dataclass(frozen=True)
class Period:
    code: str  # "2026-11", "2026-Q4", "2026"
    kind: str  # "month" | "quarter" | "year"
    start: date
    end: date  # exclusive
    title: str  # «ноябрь 2026», «4 квартал 2026», «2026 год»


def _month_start(year: int, month: int) -> date:
    return date(year + (month - 1) // 12, (month - 1) % 12 + 1, 1)


def parse_period(code: str | None) -> Period | None:
    """A month «2026-11», a quarter «2026-Q4» or a year «2026»; None for anything else."""
    match = _PERIOD.fullmatch((code or "").strip())
    if match is None:
        return None
    year = int(match["year"])
    if match["month"]:
        month = int(match["month"])
        return Period(
            f"{year}-{month:02d}",
            "month",
            date(year, month, 1),
            _month_start(year, month + 1),
            format_month_ru(date(year, month, 1)),
        )
    if match["quarter"]:
        quarter = int(match["quarter"])
        first = 3 * quarter - 2
        return Period(
            f"{year}-Q{quarter}",
            "quarter",
            date(year, first, 1),
            _month_start(year, first + 3),
            f"{quarter} квартал {year}",
        )
    return Period(str(year), "year", date(year, 1, 1), date(year + 1, 1, 1), f"{year} год")


def periods_with_documents(db: Session, account_id: int) -> list[Period]:
    """The months, quarters and years in which the account has documents, newest first, for the filter."""
    # Distinct days, read from each kind's (account_id, date, id) index: a few hundred a year, not one per document.
    days: set[date] = set()
    for day, owner in (
        (Invoice.issued_on, Invoice.account_id),
        (Upd.doc_date, Upd.account_id),
        (Ukd.doc_date, Ukd.account_id),
        (AdvanceInvoice.doc_date, AdvanceInvoice.account_id),
    ):
        days |= set(db.scalars(sa.select(day).where(owner == account_id).distinct()))
    codes: dict[str, Period] = {}
    for day in sorted(days, reverse=True):
        for code in (str(day.year), f"{day.year}-Q{(day.month - 1) // 3 + 1}", f"{day.year}-{day.month:02d}"):
            if code not in codes:
                period = parse_period(code)
                assert period is not None
                codes[code] = period
    order = {"year": 0, "quarter": 1, "month": 2}
    return sorted(codes.values(), key=lambda p: (p.start.year, order[p.kind], p.start), reverse=True)


def build_archive(
    db: Session, account_id: int, period: Period, config: Mapping[str, Any] | None = None
) -> tuple[bytes, int]:
    """A ZIP (built in memory) of every invoice and УПД (PDF and XML) dated in the period; (bytes, files)."""
    cfg = _config(config)
    buffer = io.BytesIO()
    count = 0
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for row in sorted(list_documents(db, account_id, start=period.start, end=period.end), key=lambda r: r.date):
            folder = ARCHIVE_FOLDERS[row.kind]
            for file_id in (row.pdf_file_id, row.xml_file_id):
                stored = get_file(db, account_id, file_id)
                if stored is None:
                    continue
                info = zipfile.ZipInfo(f"{folder}/{stored.download_name}", date_time=_zip_time(stored.created_at))
                info.compress_type = zipfile.ZIP_DEFLATED
                archive.writestr(info, read_file(stored, cfg))
                count += 1
    return buffer.getvalue(), count


def _zip_time(moment: datetime) -> tuple[int, int, int, int, int, int]:
    local = moment.astimezone(MSK)
    return (local.year, local.month, local.day, local.hour, local.minute, local.second)
