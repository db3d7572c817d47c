{{ config(materialized='view') }}
-- One row per billed (or pending) event and the line that bills it: the lineage bridge from a
-- line to the exact raw events, with the file and row each came from. A view, so auditing costs
-- nothing until somebody asks, and it always shows the derived tables as they are (the
-- conservation check before finalisation reads it). `meterline explain LINE_ID` reads it.
--
-- An event is billed on the line it is rated on (int_events_matched), unless that line is on
-- a finalised invoice and the event was loaded after the invoice's events cut-off: a late
-- event. It is then billed by the correction of that line (docs/invoice-lifecycle.md): the
-- finalised correction (line or credit note) whose cut-off first covers it, else the open correction
-- (a correction line, or a credit note when the correction is negative).
with matched as (
    select * from {{ ref('int_events_matched') }}
    where invoice_line_id is not null
),

raw_events as (
    select * from {{ ref('stg_raw__events') }}
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
        matched.event_id,
        matched.invoice_line_id as rated_on_invoice_line_id,
        matched.metric_code,
        matched.event_at,
        matched.loaded_at,
        matched.units,
        (finalised_lines.events_cutoff_at is not null and matched.loaded_at > finalised_lines.events_cutoff_at)
            as is_late
    from matched
    left join finalised_lines
        on matched.invoice_line_id = finalised_lines.invoice_line_id
),

late_covered as (
    select
        placed.event_id,
        issued_corrections.correction_line_id,
        issued_corrections.billed_on,
        row_number() over (
            partition by placed.event_id order by issued_corrections.events_cutoff_at
        ) as coverage_rank
    from placed
    inner join issued_corrections
        on placed.rated_on_invoice_line_id = issued_corrections.corrected_invoice_line_id
        and placed.loaded_at <= issued_corrections.events_cutoff_at
    where placed.is_late
),

billed as (
    select
        placed.*,
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
        on placed.event_id = late_covered.event_id
        and late_covered.coverage_rank = 1
    left join open_corrections
        on placed.is_late
        and placed.rated_on_invoice_line_id = open_corrections.corrected_invoice_line_id
),

final as (
    select
        billed.invoice_line_id,
        billed.billed_on,
        billed.event_id,
        raw_events.transaction_id,
        billed.metric_code,
        billed.event_at,
        billed.loaded_at,
        billed.units,
        billed.is_late,
        billed.rated_on_invoice_line_id,
        raw_events.properties,
        raw_events.source_file,
        raw_events.source_row
    from billed
    inner join raw_events
        on billed.event_id = raw_events.event_id
)

select * from final
