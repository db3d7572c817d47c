{{ config(materialized='view') }}
-- One row per event billed (or pending) on an invoice line: the lineage bridge from a line to
-- the exact raw events, with the file and row each came from. A view, so auditing costs
-- nothing until somebody asks. `meterline explain LINE_ID` reads it.
with matched as (
    select * from {{ ref('int_events_matched') }}
    where invoice_line_id is not null
),

raw_events as (
    select * from {{ ref('stg_raw__events') }}
),

final as (
    select
        matched.invoice_line_id,
        matched.event_id,
        raw_events.transaction_id,
        matched.metric_code,
        matched.event_at,
        matched.loaded_at,
        matched.units,
        raw_events.properties,
        raw_events.source_file,
        raw_events.source_row
    from matched
    inner join raw_events
        on matched.event_id = raw_events.event_id
)

select * from final
