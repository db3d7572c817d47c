{{ config(materialized='view') }}
-- One row per billed (or pending) event and the line that bills it: the lineage bridge from a
-- line to the exact raw events, with the file and row each came from. A view, so auditing costs
-- nothing until somebody asks, and it always shows the derived tables as they are.
-- `meterline explain LINE_ID` reads it. It matches events on demand (int_events_matched):
-- reading it whole reads every event, so filter it by line (or subscription and time).
--
-- An event is billed on the line it is rated on, unless it is a late event, billed by that
-- line's correction (int_line_event_placements, which decides it per line and load).
with matched as (
    select * from {{ ref('int_events_matched') }}
    where invoice_line_id is not null
),

placements as (
    select * from {{ ref('int_line_event_placements') }}
),

final as (
    select
        placements.invoice_line_id,
        placements.billed_on,
        matched.event_id,
        matched.transaction_id,
        matched.metric_code,
        matched.event_at,
        matched.loaded_at,
        matched.units,
        placements.is_late,
        matched.invoice_line_id as rated_on_invoice_line_id,
        matched.properties,
        matched.source_file,
        matched.source_row
    from matched
    inner join placements
        on matched.invoice_line_id = placements.rated_on_invoice_line_id
        and matched.loaded_at = placements.loaded_at
)

select * from final
