-- One row per correction: a line of a finalised invoice whose events include some loaded after
-- what the ledger billed for it (docs/invoice-lifecycle.md, "Late events"). The finalised invoice
-- never changes; the difference between the line recomputed with every event and what the
-- ledger already billed for it (the line and its finalised corrections) is billed again:
-- - zero or more: a correction line on the customer's next invoice that is not finalised (the
--   first subscription invoice in the same currency dated at or after the first late event was
--   loaded; without one, an invoice of its own at that instant);
-- - less: a credit note (fct_credit_notes).
-- Only late events open a correction: a finalised line that differs from its recomputation
-- for another reason (a price changed since) is left as it was issued.
-- fct_invoice_line_events links each late event to the correction that bills it.
with computed as (
    select * from {{ ref('int_invoice_fees_computed') }}
),

issued_invoices as (
    select * from {{ ref('stg_ledger__invoices') }}
),

issued_lines as (
    select * from {{ ref('stg_ledger__invoice_lines') }}
),

line_event_counts as (
    select * from {{ ref('int_line_event_counts') }}
),

-- The lines the recomputation gives for finalised invoices. Progressive billing lines are
-- snapshots of usage so far: what they missed, the period's own line bills (or corrects).
recomputed as (
    select
        computed.*,
        issued_invoices.events_cutoff_at as issued_cutoff_at
    from computed
    inner join issued_invoices
        on computed.invoice_id = issued_invoices.invoice_id
    where not computed.is_progressive_billing
),

-- What the ledger billed for each line: the line itself, its finalised corrections and its
-- finalised late-event credit notes (negative), and the newest events cut-off among them
-- (events loaded after it are not billed yet).
issued_items as (
    select
        coalesce(issued_lines.corrected_invoice_line_id, issued_lines.invoice_line_id) as invoice_line_id,
        issued_lines.quantity,
        issued_lines.amount,
        issued_invoices.events_cutoff_at
    from issued_lines
    inner join issued_invoices
        on issued_lines.invoice_id = issued_invoices.invoice_id

    union all

    select
        issued_credit_notes.corrected_invoice_line_id as invoice_line_id,
        0 - issued_credit_notes.quantity as quantity,
        0 - issued_credit_notes.amount as amount,
        issued_credit_notes.events_cutoff_at
    from {{ ref('stg_ledger__credit_notes') }} as issued_credit_notes
    where issued_credit_notes.reason = 'late_event_correction'
),

issued_billing as (
    select
        issued_items.invoice_line_id,
        sum(issued_items.quantity) as issued_units,
        sum(issued_items.amount) as issued_amount,
        max(issued_items.events_cutoff_at) as covered_through
    from issued_items
    group by 1
),

late_events as (
    select
        line_event_counts.invoice_line_id,
        sum(line_event_counts.event_count) as late_event_count,
        min(line_event_counts.loaded_at) as detected_at
    from line_event_counts
    inner join recomputed
        on line_event_counts.invoice_line_id = recomputed.invoice_line_id
    left join issued_billing
        on line_event_counts.invoice_line_id = issued_billing.invoice_line_id
    where line_event_counts.loaded_at > coalesce(issued_billing.covered_through, recomputed.issued_cutoff_at)
    group by 1
),

changes as (
    select
        recomputed.*,
        late_events.late_event_count,
        late_events.detected_at,
        cast(recomputed.units - coalesce(issued_billing.issued_units, 0) as {{ quantity_type() }}) as units_change,
        cast(recomputed.amount - coalesce(issued_billing.issued_amount, 0) as {{ rounded_money_type() }})
            as amount_change
    from recomputed
    inner join late_events
        on recomputed.invoice_line_id = late_events.invoice_line_id
    left join issued_billing
        on recomputed.invoice_line_id = issued_billing.invoice_line_id
),

open_invoices as (
    select
        computed.invoice_id,
        computed.customer_id,
        computed.currency,
        min(computed.invoice_at) as invoice_at
    from computed
    left join issued_invoices
        on computed.invoice_id = issued_invoices.invoice_id
    where issued_invoices.invoice_id is null
        and computed.fee_kind in ('subscription', 'charge', 'true_up', 'commitment')
        and not computed.is_progressive_billing
    group by 1, 2, 3
),

targets as (
    select
        changes.invoice_line_id,
        open_invoices.invoice_id,
        open_invoices.invoice_at,
        row_number() over (partition by changes.invoice_line_id order by open_invoices.invoice_at) as target_rank
    from changes
    inner join open_invoices
        on changes.customer_id = open_invoices.customer_id
        and changes.currency = open_invoices.currency
        and open_invoices.invoice_at >= changes.detected_at
),

placed as (
    select
        changes.*,
        -- Without a later invoice: one of its own, with the id any invoice at that instant has.
        coalesce(
            targets.invoice_id,
            {{ dbt.hash("changes.customer_id || '|' || changes.currency || '|' || cast(changes.detected_at as "
                        ~ dbt.type_string() ~ ")") }}
        ) as target_invoice_id,
        coalesce(targets.invoice_at, changes.detected_at) as target_invoice_at
    from changes
    left join targets
        on changes.invoice_line_id = targets.invoice_line_id
        and targets.target_rank = 1
),

final as (
    select
        -- A credit note's id depends only on the line and when its late events were detected (it
        -- is frozen in the ledger under that id); a correction line's, on the invoice it is on.
        case
            when placed.amount_change < 0 then {{ dbt.hash("placed.invoice_line_id || '|credit_note|' || cast(placed.detected_at as "
                                                            ~ dbt.type_string() ~ ")") }}
            else {{ dbt.hash("placed.invoice_line_id || '|correction|' || placed.target_invoice_id") }}
        end as correction_id,
        case when placed.amount_change < 0 then 'credit_note' else 'invoice_line' end as correction_kind,
        placed.invoice_line_id as corrected_invoice_line_id,
        placed.invoice_id as corrected_invoice_id,
        placed.target_invoice_id,
        placed.target_invoice_at,
        placed.detected_at,
        placed.late_event_count,
        placed.fee_kind,
        placed.billing_period_id,
        placed.subscription_id,
        placed.customer_id,
        placed.plan_code,
        placed.base_plan_code,
        placed.charge_id,
        placed.metric_code,
        placed.charge_model,
        'Correction: ' || placed.description || ' (' || cast(placed.service_start_date as {{ dbt.type_string() }})
            || ' to ' || cast(placed.service_last_date as {{ dbt.type_string() }}) || ', late events)' as description,
        placed.group_key,
        placed.currency,
        placed.minor_unit,
        placed.service_start_at,
        placed.service_end_at,
        placed.service_start_date,
        placed.service_last_date,
        placed.units_change,
        placed.amount_change
    from placed
)

select * from final
