"""The Flask extensions every feature may use (CSRF, rate limits, sign-in), made here and bound in create_app.

A blueprint imports them from here, never from the package root, so no feature needs `create_app`'s module.
"""

from __future__ import annotations

from flask_limiter import Limiter
from flask_limiter.util import get_remote_address
from flask_login import LoginManager
from flask_wtf.csrf import CSRFProtect

csrf = CSRFProtect()
limiter = Limiter(key_func=get_remote_address, default_limits=[], headers_enabled=True)
login_manager = LoginManager()

__all__ = ["csrf", "limiter", "login_manager"]
