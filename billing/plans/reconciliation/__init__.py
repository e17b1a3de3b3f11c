"""Reconciliation policies: findings and typed repairs decided from what detection read. Pure.

Policies (what `--apply` does for each kind):
- unbilled: conversations that ended before the last closed month boundary and are unbilled.
  Billed exactly once, by `invoices.bill_late_usage`, onto the month's invoice while it is a
  draft (or when none exists yet), otherwise onto a supplementary invoice for that month
  (supplement 1, 2, ...).
- dangling_link: a billed conversation whose line item is missing in every org, or a line item
  whose invoice is missing. A conversation linked to a line item of another org (its `org_id` was
  rewritten after billing, or is an array) is reported for a person, never released: releasing
  it would bill it twice. So are links whose conversations break the data contract (see
  malformed). A missing conversations line item is restored on its invoice when the invoice
  still records it (the period's invoice lacks its conversations item, counts exactly those
  conversations, and its stored subtotal misses a whole multiple of their count): they were
  charged there, so rebilling them would charge their minutes twice. With no invoice left for
  them the conversations are released (line_item_id back to null, conditional on the broken id)
  and billed again by the `unbilled` repair in the same run; when an invoice lacks its item but
  cannot tell the amount, the finding fails for a person to decide. An orphan line item (its
  invoice is gone) is deleted and its conversations released. Line items of void invoices are
  not findings: voiding writes their conversations off, by design (see the README).
- wrong_totals: an invoice whose subtotal or total differs from the sum of its line items.
  Recomputed from the line items unless the invoice is paid or void (money has moved or the
  invoice is closed): those are reported for a person.
- stale_draft: a draft whose billing was interrupted. Resumed and finalised.
- payment_method: Stripe is the truth for what is attached; the database for which org owns
  what. Pending attaches are finished when Stripe shows the method on the org's customer, or
  failed when it does not; unfinished detaches are detached; a method attached to the org's
  customer but unknown here is adopted (never detached: the org may use it); an active method
  that Stripe no longer has attached, or of an org without a customer, is marked detached; a
  default pointing at a missing or unusable method is cleared; a recorded customer that Stripe
  no longer has is forgotten (as customer.deleted does). The only detach in Stripe that
  reconciliation makes is of a method whose org no longer exists, and the only deletion is of
  an empty extra customer our metadata says billing created for the org; both findings say so.
- payment: payment attempts not settled after `stale_after` (a lost webhook, a process that died,
  a `processing` payment) are settled from Stripe's state, never charged again; webhooks whose
  amount, currency or customer disagreed with our attempt are reported for a person.
- usage_quantity: a conversations line item whose quantity differs from the number of the
  org's conversations linked to it (confirmed on one snapshot). Reported: money is a person's call.
- malformed: conversations billing cannot price (`started_at` or `ended_at` not one date, or
  ending before they start), and conversations that break the data contract's types
  (`line_item_id` neither null nor an ObjectId; `org_id` an array, a string, a number, null or
  missing). Billing skips them; reported, never changed.

A check that cannot finish for one org (bad data, a Stripe error) is recorded as a failed
finding of that org and the run goes on; only an unreachable database stops the run.

Detection reads (billing/_async/repositories) and hands the documents to the functions of this
package, one module per family of checks: `billing_links`, `invoices`, `conversations`,
`payments`, `payment_methods`. Each finding carries the repair `--apply` makes (`repairs`: one
frozen dataclass per kind), which the services apply in a transaction of its own; the
repair-time decisions are here too.
"""

from __future__ import annotations

from billing.plans.reconciliation.billing_links import (
    dangling,
    lacking_item,
    missing_items,
    owned_elsewhere,
    release,
    restoration,
    restore,
    restored_item,
)
from billing.plans.reconciliation.conversations import (
    MALFORMED_TEXTS,
    malformed,
    orgless,
    usage_mismatch,
    usage_suspects,
)
from billing.plans.reconciliation.invoices import (
    LateTarget,
    late_target,
    late_usage,
    retotal,
    stale_drafts,
    totals_differ,
    unbilled,
    wrong_totals,
)
from billing.plans.reconciliation.payment_methods import (
    adoption,
    clear_default,
    customer_gone,
    default_finding,
    detach_key,
    extra_customer,
    made_by_billing,
    mark_detached,
    method_findings,
    needs_stripe_detach,
    orphans,
    stripe_id_of,
    without_stripe,
)
from billing.plans.reconciliation.payments import (
    mismatched_webhooks,
    unsettled_payments,
)
from billing.plans.reconciliation.refunds import (
    RECHECK,
    credits_off,
    refunds_in_stripe,
    refunds_to_ask,
    refunds_unlisted,
    stuck_refunds,
)
from billing.plans.reconciliation.repairs import (
    LIVE,
    Adopt,
    BillingRepair,
    BillLate,
    ClearDefault,
    DeleteExtraCustomer,
    DeleteOrphanItem,
    DetachOrphan,
    FinishAttach,
    FinishDetach,
    FinishRefund,
    ForgetCustomer,
    MarkGone,
    MethodRepair,
    ReleaseLinks,
    Repair,
    ResumeDraft,
    Retotal,
    SettlePayment,
)

__all__ = [
    "LIVE",
    "ReleaseLinks",
    "DeleteOrphanItem",
    "Retotal",
    "ResumeDraft",
    "BillLate",
    "SettlePayment",
    "FinishRefund",
    "ClearDefault",
    "ForgetCustomer",
    "FinishDetach",
    "MarkGone",
    "FinishAttach",
    "Adopt",
    "DeleteExtraCustomer",
    "DetachOrphan",
    "BillingRepair",
    "MethodRepair",
    "Repair",
    "missing_items",
    "dangling",
    "restored_item",
    "owned_elsewhere",
    "lacking_item",
    "restoration",
    "restore",
    "release",
    "wrong_totals",
    "totals_differ",
    "retotal",
    "stale_drafts",
    "unbilled",
    "LateTarget",
    "late_target",
    "late_usage",
    "usage_suspects",
    "usage_mismatch",
    "MALFORMED_TEXTS",
    "malformed",
    "orgless",
    "unsettled_payments",
    "mismatched_webhooks",
    "stuck_refunds",
    "RECHECK",
    "refunds_to_ask",
    "refunds_in_stripe",
    "refunds_unlisted",
    "credits_off",
    "stripe_id_of",
    "default_finding",
    "customer_gone",
    "method_findings",
    "extra_customer",
    "orphans",
    "without_stripe",
    "detach_key",
    "needs_stripe_detach",
    "made_by_billing",
    "mark_detached",
    "clear_default",
    "adoption",
]
