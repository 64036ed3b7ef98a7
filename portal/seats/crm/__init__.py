"""CRM adapters for the seat sync: interface, amoCRM client, OAuth (the local emulator is devtools.crm_emulator)."""

from .amocrm import AmoCrmClient
from .base import (
    CrmAccountInfo,
    CrmAuthError,
    CrmBadResponse,
    CrmBlocked,
    CrmClient,
    CrmError,
    CrmGroup,
    CrmRefused,
    CrmUnavailable,
    CrmUser,
    NewCrmUser,
    generate_password,
)
from .oauth import MemoryTokenStore, OAuthCredentials, Tokens, TokenStore

__all__ = [
    "AmoCrmClient",
    "CrmAccountInfo",
    "CrmAuthError",
    "CrmBadResponse",
    "CrmBlocked",
    "CrmClient",
    "CrmError",
    "CrmGroup",
    "CrmRefused",
    "CrmUnavailable",
    "CrmUser",
    "MemoryTokenStore",
    "NewCrmUser",
    "OAuthCredentials",
    "TokenStore",
    "Tokens",
    "generate_password",
]
