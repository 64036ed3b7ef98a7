"""Reliability under concurrency and faults (issue 9, part 2); most of it needs PostgreSQL (`pg_url`).

Where each promise is proven:

- 50 concurrent deliveries of one payment notification → one activation:
  tests/payments/test_concurrency.py (in threads on either database, and over real HTTP on PostgreSQL);
  tests/billing/test_concurrency_pg.py (apply_paid_order from 10 sessions).
- 20 concurrent invoice creations → numbers 1…20 without gaps:
  tests/reliability/test_invoices_at_once.py (twenty accountants pressing the checkout button over real HTTP);
  tests/documents/test_invoices.py::test_twenty_concurrent_invoices_on_postgresql_get_numbers_1_to_20.
- The CRM unreachable during messenger changes → every change delivered once after it returns:
  tests/reliability/test_crm_outage.py (team page and API, two servers draining the outbox);
  tests/crm/portal/test_outbox.py (backoff, failure after the last attempt).
- A crash in the middle of writing a document → no partial file, produced on the next attempt:
  tests/reliability/test_document_crash.py (a real SIGKILL halfway through the bytes);
  tests/documents/test_store.py, tests/documents/test_upd_flow.py (an exception before the rename).
- `billing tick` run twice at once → each change once:
  tests/reliability/test_tick_twice.py (expiry, trial end, scheduled downgrade, unpaid order, lost payment
  notification, pending УПД); tests/billing/test_concurrency_pg.py (four ticks, five expiries).
"""
