{{ config(meta={'dagster': {'ref': {'name': 'fct_event_reconciliation'}}}) }}
-- Conservation of events. A failure means input was lost or counted twice somewhere between
-- the raw tables and the invoices: the accepted raw events must equal billed + pending +
-- excluded, and the rejected records must equal the rejected rows of the reconciliation.
with reconciliation as (
    select * from {{ ref('fct_event_reconciliation') }}
),

accounted as (
    select
        sum(case when outcome <> 'rejected' then event_count else 0 end) as accepted_accounted,
        sum(case when outcome = 'rejected' then event_count else 0 end) as rejected_accounted
    from reconciliation
),

raw_counts as (
    select
        (select count(*) from {{ source('raw', 'events') }}) as accepted_raw,
        (select count(*) from {{ source('raw', 'event_rejects') }}) as rejected_raw,
        (select count(*) from {{ ref('int_event_arrivals') }}) as arrivals
)

select *
from raw_counts
cross join accounted
where coalesce(accounted.accepted_accounted, 0) <> raw_counts.accepted_raw
    or coalesce(accounted.rejected_accounted, 0) <> raw_counts.rejected_raw
    or raw_counts.arrivals <> raw_counts.accepted_raw
