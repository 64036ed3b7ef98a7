"""Signals billing sends to the features that react to an order without billing knowing them (DESIGN: billing
knows nothing of payments or documents)."""

from __future__ import annotations

import weakref
from collections.abc import Callable
from typing import Any

from blinker import Namespace, Signal

_signals = Namespace()

# An unpaid order will never be paid: canceled by the owner or staff, withdrawn (an upgrade priced against a plan
# that has changed since), or expired. Sent inside the transaction that closes it, with keyword arguments
# db, order, reason, now. Payments gives back to the balance any money already applied to it; documents annuls its
# invoice.
order_closed = _signals.signal("order-closed")

# A paid order's period was canceled before it began (a prepaid renewal or a scheduled smaller plan): its rights are
# never granted. Sent inside the transaction, with keyword arguments db, order, reason, now. Payments gives the money
# applied to it back to the balance; documents forms no УПД for it.
scheduled_period_canceled = _signals.signal("scheduled-period-canceled")

# A prepaid later period that an upgrade order had raised to its plan was canceled before it began: the part of that
# (paid) upgrade order which paid for raising it is never delivered. Sent inside the transaction, with keyword
# arguments db, order (the upgrade order), amount (kopecks of that part), reason, now. Payments gives that part back
# to the balance, flagged to staff when the order's УПД already names the period (a correction is theirs to make).
scheduled_topup_canceled = _signals.signal("scheduled-topup-canceled")

# Time passed: `billing tick` has done and committed billing's own work. Each receiver does its feature's part with
# the session as sender and keyword argument now, and returns lines saying what it did (payments re-checks payments
# and settles opened card orders; documents forms УПД and issues invoices). The tick calls them one by one in the
# order create_app connected them, committing after each, so one that fails neither undoes nor blocks the rest.
tick_done = _signals.signal("tick-done")

# A paid period ended unrenewed with no renewal invoice open: a receiver may return why its plan is still kept in
# grace (payments: autopayment retries still running), with the session as sender and keyword argument period.
grace_asked = _signals.signal("grace-asked")


def receivers_in_order(signal: Signal) -> list[Callable[..., Any]]:
    """The live receivers in the order they were connected (blinker's own send does not keep an order)."""
    live = []
    for receiver in list(signal.receivers.values()):
        target = receiver() if isinstance(receiver, weakref.ref) else receiver
        if target is not None:
            live.append(target)
    return live
