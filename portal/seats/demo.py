"""Demo hooks of the seats package: the CRM emulator and ООО «Ромашка»'s connection to it."""

from __future__ import annotations

from portal.seats.crm.demo import seed, start

__all__ = ["seed", "start"]
