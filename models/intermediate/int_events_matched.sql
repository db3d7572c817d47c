{{ config(materialized='view') }}
-- One row per deduplicated event: the invoice line (subscription x period x price) it is
-- billed on, or why it is excluded; events after the run's as_of are held back
-- ('after_cutoff'). A view: the metering tables count events in bulk (int_usage_increments)
-- and keep only some one by one (int_events_itemised); this matches any event on demand with
-- the same definition (macros/metering.sql), for lineage (fct_invoice_line_events) and audits.
-- Reading it whole reads every event: filter it by subscription or customer and time.
{%- set catalog = metering_catalog() %}

with events as (
    select * from {{ ref('int_events_deduplicated') }}
),

matched as (
    {{ match_events('events', catalog) }}
),

prices as (
    {{ resolve_prices('matched', catalog) }}
),

final as (
    select
        matched.event_id,
        matched.transaction_id,
        matched.event_at,
        matched.loaded_at,
        matched.metric_code,
        matched.properties,
        matched.batch_id,
        matched.source_file,
        matched.source_row,
        -- The phase, line and price the event is billed on (or why it is not).
        {{ billed_event_columns() }}
    from matched
    {{ join_resolved_prices('matched', catalog) }}
)

select * from final
