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
-- A finalised invoice keeps what the ledger says it took (a voided one takes nothing back
-- from the balance it drew on: its credits are available again to later invoices).
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

issued_totals as (
    select issued.invoice_id, sum(issued.credit_amount) as credit_amount
    from issued
    group by 1
),

-- Each credit note's slice of its customer's balance, in issue order.
credit_sequence as (
    select
        credit_notes.credit_note_id,
        credit_notes.customer_id,
        credit_notes.currency,
        credit_notes.issued_at,
        credit_notes.total_amount,
        sum(credit_notes.total_amount) over (
            partition by credit_notes.customer_id, credit_notes.currency
            order by credit_notes.issued_at, credit_notes.credit_note_id
            rows between unbounded preceding and current row
        ) as credited_through
    from credit_notes
),

holders as (
    select distinct credit_notes.customer_id, credit_notes.currency
    from credit_notes
),

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
),

-- What each invoice asks of the balance, and everything credited up to its instant.
demands as (
    select
        invoices.invoice_id,
        invoices.customer_id,
        invoices.currency,
        invoices.invoice_at,
        case
            when issued_invoices.invoice_id is null
                then case when invoices.invoice_total > 0 then invoices.invoice_total else 0 end
            when issued_invoices.status = 'voided' then 0
            else coalesce(issued_totals.credit_amount, 0)
        end as demand_amount,
        coalesce(sum(credit_sequence.total_amount), 0) as credited_amount
    from invoices
    left join issued_invoices
        on invoices.invoice_id = issued_invoices.invoice_id
    left join issued_totals
        on invoices.invoice_id = issued_totals.invoice_id
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

-- A finalised invoice's rows as the ledger issued them.
final as (
    select computed.*
    from computed
    left join issued_invoices
        on computed.invoice_id = issued_invoices.invoice_id
    where issued_invoices.invoice_id is null

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
