"""Signals billing sends to the features that react to an order without billing knowing them (DESIGN: billing
knows nothing of payments or documents)."""

from __future__ import annotations

from blinker import Namespace

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
