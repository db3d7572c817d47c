-- One row per outcome and reason, with how many input records ended there. The proof that
-- no event is lost: every accepted raw event is billed (on a closed invoice's line), pending
-- (on a draft invoice, or after the run's as_of), or excluded with a reason (a duplicate, an
-- unknown subscription, ...); every rejected input record is counted with its reason.
-- tests/dbt/assert_every_event_accounted_for.sql checks the sums against the raw tables.
with rejects as (
    select * from {{ ref('stg_raw__event_rejects') }}
),

duplicates as (
    select * from {{ ref('int_event_duplicates') }}
),

matched as (
    select * from {{ ref('int_events_matched') }}
),

lines as (
    select * from {{ ref('fct_invoice_lines') }}
),

matched_by_line as (
    select
        matched.invoice_line_id,
        matched.exclusion_reason,
        count(*) as event_count
    from matched
    group by 1, 2
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
        case
            when matched_by_line.exclusion_reason = 'after_cutoff' then 'pending'
            when matched_by_line.exclusion_reason is not null then 'excluded'
            when lines.status = 'closed' then 'billed'
            else 'pending'
        end as outcome,
        case
            when matched_by_line.exclusion_reason is not null then matched_by_line.exclusion_reason
            when lines.status = 'closed' then 'closed_invoice'
            else 'open_period'
        end as reason,
        sum(matched_by_line.event_count) as event_count
    from matched_by_line
    left join lines
        on matched_by_line.invoice_line_id = lines.invoice_line_id
    group by 1, 2
),

final as (
    select
        outcomes.outcome,
        outcomes.reason,
        cast(sum(outcomes.event_count) as bigint) as event_count
    from outcomes
    group by 1, 2
)

select * from final
