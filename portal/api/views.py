"""The JSON API blueprint (/api/v1): each part lives in its own module and adds routes to `bp`."""

from __future__ import annotations

from flask import Blueprint

from portal.extensions import csrf

bp = Blueprint("api", __name__, url_prefix="/api/v1")
# Machine clients send no browser session, so there is no CSRF token to check; each endpoint authenticates itself.
csrf.exempt(bp)

# Each module registers its routes on bp: pricing (billing), limits (seats: limits, storage, users for the messenger).
from portal.api import limits, pricing  # noqa: E402,F401
