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
