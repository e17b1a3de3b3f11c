"""Invoice state changes: transitions, usage billed at frozen prices, totals derived once."""

from __future__ import annotations

import itertools

import pytest
from bson import ObjectId
from hypothesis import given, settings
from hypothesis import strategies as st

from billing.domain import invoicing
from billing.domain.models import Invoice, InvoiceStatus, LineItemKind
from billing.domain.pricing import Usage
from billing.errors import CurrencyMismatch, InvalidMoney, InvalidTransition, InvoiceNotEditable
from tests.unit.factories import NOW, OCT, invoice, line_item, org

S = InvoiceStatus
ALLOWED = {
    (S.DRAFT, S.OPEN), (S.DRAFT, S.VOID),
    (S.OPEN, S.PAID), (S.OPEN, S.VOID), (S.OPEN, S.UNCOLLECTIBLE),
    (S.UNCOLLECTIBLE, S.PAID), (S.UNCOLLECTIBLE, S.VOID),
}
NOT_DRAFT = [S.OPEN, S.PAID, S.VOID, S.UNCOLLECTIBLE]


def new_id() -> str:
    return str(ObjectId())


def check_totals(inv: Invoice) -> None:
    for li in inv.line_items:
        assert li.amount == li.quantity * li.unit_amount
        assert li.currency == inv.currency
        assert (li.org_id, li.invoice_id) == (inv.org_id, inv.id)
    assert inv.subtotal == inv.total == sum(li.amount for li in inv.line_items)


def test_the_table_covers_every_status() -> None:
    assert set(invoicing.TRANSITIONS) == set(S)


@pytest.mark.parametrize("src, dst", list(itertools.product(S, S)))
def test_transition_allows_exactly_the_table(src: InvoiceStatus, dst: InvoiceStatus) -> None:
    inv = invoice(org(), status=src)
    if (src, dst) in ALLOWED:
        assert invoicing.transition(inv, dst).status is dst
        assert inv.status is src  # the old state is untouched
    else:
        with pytest.raises(InvalidTransition, match=f"is {src.value} and cannot become"):
            invoicing.transition(inv, dst)


@pytest.mark.parametrize("terminal", [S.PAID, S.VOID])
def test_paid_and_void_are_terminal(terminal: InvoiceStatus) -> None:
    assert invoicing.TRANSITIONS[terminal] == frozenset()


def test_new_invoice_is_an_empty_draft_in_the_orgs_currency() -> None:
    acme = org(currency="eur")
    inv = invoicing.new_invoice(acme, OCT, supplement=2, now=NOW, id=new_id())
    assert (inv.status, inv.complete, inv.currency, inv.supplement) == (S.DRAFT, False, "eur", 2)
    assert (inv.subtotal, inv.total, inv.line_items, inv.number) == (0, 0, (), None)
    assert (inv.period_start, inv.period_end, inv.org_id) == (OCT.start, OCT.end, acme.id)


def test_add_usage_creates_one_line_per_kind_at_the_orgs_prices() -> None:
    acme = org(per_conversation=10, per_started_minute=3)
    inv = invoicing.add_usage(invoice(acme), acme, Usage(4, 9), new_id=new_id)
    conv = inv.item(LineItemKind.CONVERSATIONS)
    mins = inv.item(LineItemKind.MINUTES)
    assert conv is not None and mins is not None
    assert (conv.quantity, conv.unit_amount, conv.amount) == (4, 10, 40)
    assert (mins.quantity, mins.unit_amount, mins.amount) == (9, 3, 27)
    assert inv.total == inv.subtotal == 67
    assert inv.conversations == 4
    check_totals(inv)


@settings(max_examples=60, deadline=None)
@given(st.lists(
    st.tuples(st.integers(0, 10_000), st.integers(0, 100_000),  # conversations, minutes
              st.integers(0, 10**6), st.integers(0, 10**6)),  # the org's prices at that time
    min_size=1, max_size=8,
))
def test_add_usage_keeps_amounts_and_totals_exact_at_frozen_prices(
    chunks: list[tuple[int, int, int, int]],
) -> None:
    acme = org()
    inv = invoice(acme)
    inv = invoicing.add_line_item(inv, line_item(inv, quantity=2, unit_amount=999))
    first_prices = (chunks[0][2], chunks[0][3])
    for conversations, minutes, per_conv, per_min in chunks:
        priced = acme.model_copy(update={"prices": acme.prices.model_copy(
            update={"per_conversation": per_conv, "per_started_minute": per_min})})
        inv = invoicing.add_usage(inv, priced, Usage(conversations, minutes), new_id=new_id)
        check_totals(inv)
    conv = inv.item(LineItemKind.CONVERSATIONS)
    mins = inv.item(LineItemKind.MINUTES)
    assert conv is not None and mins is not None
    assert (conv.unit_amount, mins.unit_amount) == first_prices
    assert conv.quantity == inv.conversations == sum(c[0] for c in chunks)
    assert mins.quantity == sum(c[1] for c in chunks)
    assert len(inv.line_items) == 3  # the manual line and one line per usage kind
    assert inv.total == 2 * 999 + conv.quantity * first_prices[0] + mins.quantity * first_prices[1]


def test_a_price_change_between_chunks_does_not_reprice_the_draft() -> None:
    acme = org(per_conversation=10, per_started_minute=3)
    inv = invoicing.add_usage(invoice(acme), acme, Usage(1, 1), new_id=new_id)
    dearer = org(id=acme.id, per_conversation=1000, per_started_minute=1000)
    inv = invoicing.add_usage(inv, dearer, Usage(1, 1), new_id=new_id)
    assert inv.total == 2 * 10 + 2 * 3


def test_add_usage_refuses_a_changed_org_currency() -> None:
    acme = org(currency="usd")
    inv = invoicing.add_usage(invoice(acme), acme, Usage(1, 1), new_id=new_id)
    with pytest.raises(CurrencyMismatch, match="set the org's currency back to usd"):
        invoicing.add_usage(inv, org(id=acme.id, currency="eur"), Usage(1, 1), new_id=new_id)


@pytest.mark.parametrize("status", NOT_DRAFT)
def test_add_usage_only_on_drafts(status: InvoiceStatus) -> None:
    acme = org()
    with pytest.raises(InvoiceNotEditable):
        invoicing.add_usage(invoice(acme, status=status), acme, Usage(1, 1), new_id=new_id)


def test_add_usage_refuses_an_unstorable_amount() -> None:
    acme = org(per_conversation=2**62)
    with pytest.raises(InvalidMoney):
        invoicing.add_usage(invoice(acme), acme, Usage(2, 0), new_id=new_id)


def test_finalize_opens_with_the_number_and_time() -> None:
    acme = org()
    draft = invoicing.add_usage(invoice(acme), acme, Usage(2, 3), new_id=new_id)
    opened = invoicing.finalize(draft, number=7, now=NOW)
    assert (opened.status, opened.number, opened.finalized_at, opened.complete) == (
        S.OPEN, 7, NOW, True)
    assert opened.display_number == "000007"
    assert opened.line_items == draft.line_items and opened.total == draft.total


@pytest.mark.parametrize("status", NOT_DRAFT)
def test_finalize_only_drafts(status: InvoiceStatus) -> None:
    with pytest.raises(InvalidTransition):
        invoicing.finalize(invoice(org(), status=status), number=1, now=NOW)


def test_manual_line_items_are_added_and_removed_on_drafts() -> None:
    inv = invoice(org())
    fee = line_item(inv, quantity=3, unit_amount=250)
    added = invoicing.add_line_item(inv, fee)
    assert added.line_items == (fee,) and added.total == added.subtotal == 750
    removed = invoicing.remove_line_item(added, fee)
    assert removed.line_items == () and removed.total == removed.subtotal == 0


@pytest.mark.parametrize("status", NOT_DRAFT)
def test_line_items_change_only_on_drafts(status: InvoiceStatus) -> None:
    draft = invoice(org())
    fee = line_item(draft)
    with pytest.raises(InvoiceNotEditable):
        invoicing.add_line_item(draft.model_copy(update={"status": status}), fee)
    on = invoicing.add_line_item(draft, fee).model_copy(update={"status": status})
    with pytest.raises(InvoiceNotEditable):
        invoicing.remove_line_item(on, fee)


def test_usage_lines_cannot_be_removed() -> None:
    acme = org()
    inv = invoicing.add_usage(invoice(acme), acme, Usage(1, 1), new_id=new_id)
    for kind in (LineItemKind.CONVERSATIONS, LineItemKind.MINUTES):
        usage_line = inv.item(kind)
        assert usage_line is not None
        with pytest.raises(InvoiceNotEditable, match="cannot be removed"):
            invoicing.remove_line_item(inv, usage_line)


def test_a_line_item_in_another_currency_is_refused() -> None:
    inv = invoice(org(currency="usd"))
    with pytest.raises(CurrencyMismatch):
        invoicing.add_line_item(inv, line_item(inv, currency="eur"))


def test_with_items_refuses_an_unstorable_total() -> None:
    inv = invoice(org())
    big = line_item(inv, quantity=1, unit_amount=2**62)
    with pytest.raises(InvalidMoney):
        invoicing.with_items(inv, (big, big.model_copy(update={"id": new_id()})))
