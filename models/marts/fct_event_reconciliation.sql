{{ config(materialized='view') }}
-- One row per outcome and reason, with how many input records ended there. The proof that
-- no event is lost: every accepted raw event is billed (on exactly one invoice line or credit
-- note: the metering counts each event once, on one line and load, and the placement of that
-- line and load says what bills it), pending (on a draft, or after the run's as_of), or excluded
-- with a reason (a duplicate, an unknown subscription, a voided invoice, ...); every rejected
-- input record is counted with its reason. A view: it always shows the derived tables as they
-- are, and tests/dbt/assert_every_event_accounted_for.sql checks its sums against the raw tables
-- before anything is finalised.
with rejects as (
    select * from {{ ref('stg_raw__event_rejects') }}
),

duplicates as (
    select * from {{ ref('int_event_duplicates') }}
),

-- Excluded and pending events, counted by the metering (int_usage_increments) by reason.
excluded as (
    select * from {{ ref('int_usage_increments') }}
    where exclusion_reason is not null
),

line_event_counts as (
    select * from {{ ref('int_line_event_counts') }}
),

placements as (
    select * from {{ ref('int_line_event_placements') }}
),

lines as (
    select * from {{ ref('fct_invoice_lines') }}
),

credit_notes as (
    select * from {{ ref('fct_credit_notes') }}
),

events_by_line as (
    select
        placements.invoice_line_id,
        placements.billed_on,
        placements.is_late,
        sum(line_event_counts.event_count) as event_count
    from line_event_counts
    inner join placements
        on line_event_counts.invoice_line_id = placements.rated_on_invoice_line_id
        and line_event_counts.loaded_at = placements.loaded_at
    group by 1, 2, 3
),

-- The status of what bills each group of events: an invoice line's invoice, or a credit note.
billing_status as (
    select
        events_by_line.*,
        case
            when events_by_line.billed_on = 'credit_note' then credit_notes.status
            else lines.status
        end as status
    from events_by_line
    left join lines
        on events_by_line.billed_on = 'invoice_line'
        and events_by_line.invoice_line_id = lines.invoice_line_id
    left join credit_notes
        on events_by_line.billed_on = 'credit_note'
        and events_by_line.invoice_line_id = credit_notes.credit_note_id
),

outcomes as (
    select
        'rejected' as outcome,
        rejects.reason_code as reason,
        count(*) as event_count
    from rejects
    group by 1, 2

    union all

    select
        'excluded' as outcome,
        'duplicate' as reason,
        count(*) as event_count
    from duplicates

    union all

    select
        case when excluded.exclusion_reason = 'after_cutoff' then 'pending' else 'excluded' end as outcome,
        excluded.exclusion_reason as reason,
        sum(excluded.event_count) as event_count
    from excluded
    group by 1, 2

    union all

    select
        case
            when billing_status.status is null then 'lost'
            when billing_status.status = 'voided' then 'excluded'
            when billing_status.status = 'draft' then 'pending'
            else 'billed'
        end as outcome,
        case
            when billing_status.status is null then 'no_invoice_line'
            when billing_status.status = 'voided' then 'voided_invoice'
            when billing_status.billed_on = 'credit_note' then 'late_event_credit_note'
            when billing_status.is_late then 'late_event_correction'
            when billing_status.status = 'draft' then 'open_period'
            when billing_status.status = 'finalized' then 'finalized_invoice'
            else 'closed_invoice'
        end as reason,
        sum(billing_status.event_count) as event_count
    from billing_status
    group by 1, 2
),

final as (
    select
        outcomes.outcome,
        outcomes.reason,
        cast(sum(outcomes.event_count) as bigint) as event_count
    from outcomes
    group by 1, 2
    having sum(outcomes.event_count) <> 0
)

select * from final
