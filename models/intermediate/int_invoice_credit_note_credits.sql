-- One row per invoice and credit note whose credit pays part of it (docs/invoice-amounts.md,
-- step 4): credit notes pay after tax and before prepaid credits.
--
-- A customer's credit notes that are credited (not refunded, not voided) form one balance per
-- currency: each adds its total from the instant it is issued, and the customer's invoices
-- draw on it in invoice order, as much as each owes. As with wallets, the greedy recurrence
--   applied_k = min(applied_{k-1} + demand_k, credited_k)
-- has the closed form applied_k = S_k + min(0, min_{i<=k}(credited_i - S_i)), S_k the running
-- sum of demands. The credit notes are used oldest first: an invoice's slice [applied_{k-1},
-- applied_k) of the balance overlaps the slices the credit notes fill, in issue order.
--
-- A finalised invoice keeps what the ledger says it took, from the credit notes it names; those
-- draws come off each credit note first, and only what is left of the notes pays the other
-- invoices (so no credit is spent twice, whatever order the invoices come in). A voided invoice
-- gives its draws back.
with line_totals as (
    select * from {{ ref('int_invoice_line_totals') }}
),

credit_notes as (
    select * from {{ ref('int_credit_notes') }}
    where credit_method = 'credit'
        and status <> 'voided'
        and total_amount > 0
),

issued_invoices as (
    select * from {{ ref('stg_ledger__invoices') }}
),

issued as (
    select * from {{ source('ledger', 'invoice_credit_note_credits') }}
),

-- What finalised invoices (not voided) took of each credit note, as the ledger says.
issued_draws as (
    select issued.credit_note_id, sum(issued.credit_amount) as drawn_amount
    from issued
    inner join issued_invoices
        on issued.invoice_id = issued_invoices.invoice_id
    where issued_invoices.status <> 'voided'
    group by 1
),

left_to_use as (
    select
        credit_notes.credit_note_id,
        credit_notes.customer_id,
        credit_notes.currency,
        credit_notes.issued_at,
        credit_notes.total_amount - coalesce(issued_draws.drawn_amount, 0) as total_amount
    from credit_notes
    left join issued_draws
        on credit_notes.credit_note_id = issued_draws.credit_note_id
    where credit_notes.total_amount - coalesce(issued_draws.drawn_amount, 0) > 0
),

-- Each credit note's slice of what its customer has left, in issue order.
credit_sequence as (
    select
        left_to_use.*,
        sum(left_to_use.total_amount) over (
            partition by left_to_use.customer_id, left_to_use.currency
            order by left_to_use.issued_at, left_to_use.credit_note_id
            rows between unbounded preceding and current row
        ) as credited_through
    from left_to_use
),

holders as (
    select distinct left_to_use.customer_id, left_to_use.currency
    from left_to_use
),

-- The invoices not finalised: they share what the credit notes have left.
invoices as (
    select distinct
        line_totals.invoice_id,
        line_totals.customer_id,
        line_totals.currency,
        line_totals.invoice_at,
        line_totals.invoice_total
    from line_totals
    inner join holders
        on line_totals.customer_id = holders.customer_id
        and line_totals.currency = holders.currency
    left join issued_invoices
        on line_totals.invoice_id = issued_invoices.invoice_id
    where issued_invoices.invoice_id is null
),

-- What each invoice asks of the balance, and everything credited up to its instant.
demands as (
    select
        invoices.invoice_id,
        invoices.customer_id,
        invoices.currency,
        invoices.invoice_at,
        case when invoices.invoice_total > 0 then invoices.invoice_total else 0 end as demand_amount,
        coalesce(sum(credit_sequence.total_amount), 0) as credited_amount
    from invoices
    left join credit_sequence
        on invoices.customer_id = credit_sequence.customer_id
        and invoices.currency = credit_sequence.currency
        and credit_sequence.issued_at <= invoices.invoice_at
    group by 1, 2, 3, 4, 5
),

cumulative as (
    select
        demands.*,
        sum(demands.demand_amount) over (
            partition by demands.customer_id, demands.currency
            order by demands.invoice_at, demands.invoice_id
            rows between unbounded preceding and current row
        ) as demanded_to_date
    from demands
),

applied as (
    select
        cumulative.*,
        cumulative.demanded_to_date + least(0, min(cumulative.credited_amount - cumulative.demanded_to_date) over (
            partition by cumulative.customer_id, cumulative.currency
            order by cumulative.invoice_at, cumulative.invoice_id
            rows between unbounded preceding and current row
        )) as applied_to_date
    from cumulative
),

paid as (
    select
        applied.*,
        applied.applied_to_date - coalesce(lag(applied.applied_to_date) over (
            partition by applied.customer_id, applied.currency
            order by applied.invoice_at, applied.invoice_id
        ), 0) as paid_amount
    from applied
),

computed as (
    select
        paid.invoice_id,
        credit_sequence.credit_note_id,
        paid.customer_id,
        paid.currency,
        paid.invoice_at,
        cast(
            least(paid.applied_to_date, credit_sequence.credited_through)
            - greatest(paid.applied_to_date - paid.paid_amount,
                       credit_sequence.credited_through - credit_sequence.total_amount)
            as {{ rounded_money_type() }}
        ) as credit_amount
    from paid
    inner join credit_sequence
        on paid.customer_id = credit_sequence.customer_id
        and paid.currency = credit_sequence.currency
        and credit_sequence.credited_through > paid.applied_to_date - paid.paid_amount
        and credit_sequence.credited_through - credit_sequence.total_amount < paid.applied_to_date
    where paid.paid_amount > 0
),

-- And a finalised invoice's rows as the ledger issued them.
final as (
    select computed.*
    from computed

    union all

    select
        issued.invoice_id,
        issued.credit_note_id,
        issued.customer_id,
        issued.currency,
        issued.invoice_at,
        issued.credit_amount
    from issued
)

select * from final
