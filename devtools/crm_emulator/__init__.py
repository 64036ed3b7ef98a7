"""A local amoCRM for development and tests: its API, OAuth pages and an admin page (`python -m devtools.crm_emulator`).

Never shipped: pyproject packages only `portal*`. `emulator` holds the account's state and the knobs tests turn
(faults, a plan limit, token lifetimes); `app` serves it as a small Flask app with Jinja templates.
"""

from .app import QuietHandler, create_app, running_emulator, serve
from .emulator import (
    DEFAULT_CLIENT_ID,
    DEFAULT_CLIENT_SECRET,
    EmulatedGroup,
    EmulatedUser,
    Emulator,
    EmulatorError,
    RequestRecord,
)

__all__ = [
    "DEFAULT_CLIENT_ID",
    "DEFAULT_CLIENT_SECRET",
    "EmulatedGroup",
    "EmulatedUser",
    "Emulator",
    "EmulatorError",
    "QuietHandler",
    "RequestRecord",
    "create_app",
    "running_emulator",
    "serve",
]
