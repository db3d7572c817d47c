-- One row per invoice line and load of its events: where those events are billed. On the line
-- they are rated on, unless that line is on a finalised invoice and they were loaded after the
-- invoice's events cut-off: late events. They are then billed by the correction of that line
-- (docs/invoice-lifecycle.md): the finalised correction (line or credit note) whose cut-off
-- first covers their load, else the open correction (a correction line, or a credit note when
-- the correction is negative). Whether an event is late depends on its line and load alone, so
-- this is decided per load, not per event: the lineage view (fct_invoice_line_events), the
-- reconciliation and revenue recognition all read it.
with loads as (
    select distinct invoice_line_id, loaded_at
    from {{ ref('int_line_event_counts') }}
),

computed_lines as (
    select * from {{ ref('int_invoice_fees_computed') }}
    where not is_progressive_billing
),

issued_invoices as (
    select * from {{ ref('stg_ledger__invoices') }}
),

-- Finalised corrections: correction lines and late-event credit notes, with the cut-off of the
-- events they billed.
issued_corrections as (
    select
        issued_lines.corrected_invoice_line_id,
        issued_lines.invoice_line_id as correction_line_id,
        'invoice_line' as billed_on,
        issued_invoices.events_cutoff_at
    from {{ ref('stg_ledger__invoice_lines') }} as issued_lines
    inner join issued_invoices
        on issued_lines.invoice_id = issued_invoices.invoice_id
    where issued_lines.corrected_invoice_line_id is not null

    union all

    select
        issued_credit_notes.corrected_invoice_line_id,
        issued_credit_notes.credit_note_id as correction_line_id,
        'credit_note' as billed_on,
        issued_credit_notes.events_cutoff_at
    from {{ ref('stg_ledger__credit_notes') }} as issued_credit_notes
    where issued_credit_notes.reason = 'late_event_correction'
),

open_corrections as (
    select * from {{ ref('int_invoice_corrections') }}
),

-- The events cut-off of each line on a finalised invoice: events loaded after it are late.
finalised_lines as (
    select
        computed_lines.invoice_line_id,
        issued_invoices.events_cutoff_at
    from computed_lines
    inner join issued_invoices
        on computed_lines.invoice_id = issued_invoices.invoice_id
),

placed as (
    select
        loads.invoice_line_id as rated_on_invoice_line_id,
        loads.loaded_at,
        (finalised_lines.events_cutoff_at is not null and loads.loaded_at > finalised_lines.events_cutoff_at)
            as is_late
    from loads
    left join finalised_lines
        on loads.invoice_line_id = finalised_lines.invoice_line_id
),

late_covered as (
    select
        placed.rated_on_invoice_line_id,
        placed.loaded_at,
        issued_corrections.correction_line_id,
        issued_corrections.billed_on,
        row_number() over (
            partition by placed.rated_on_invoice_line_id, placed.loaded_at
            order by issued_corrections.events_cutoff_at
        ) as coverage_rank
    from placed
    inner join issued_corrections
        on placed.rated_on_invoice_line_id = issued_corrections.corrected_invoice_line_id
        and placed.loaded_at <= issued_corrections.events_cutoff_at
    where placed.is_late
),

final as (
    select
        placed.rated_on_invoice_line_id,
        placed.loaded_at,
        placed.is_late,
        case
            when not placed.is_late then placed.rated_on_invoice_line_id
            else coalesce(late_covered.correction_line_id, open_corrections.correction_id)
        end as invoice_line_id,
        case
            when not placed.is_late then 'invoice_line'
            when late_covered.correction_line_id is not null then late_covered.billed_on
            when open_corrections.correction_kind = 'credit_note' then 'credit_note'
            else 'invoice_line'
        end as billed_on
    from placed
    left join late_covered
        on placed.rated_on_invoice_line_id = late_covered.rated_on_invoice_line_id
        and placed.loaded_at = late_covered.loaded_at
        and late_covered.coverage_rank = 1
    left join open_corrections
        on placed.is_late
        and placed.rated_on_invoice_line_id = open_corrections.corrected_invoice_line_id
)

select * from final
