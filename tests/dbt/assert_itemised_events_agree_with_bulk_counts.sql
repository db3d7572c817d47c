-- The two ways of metering agree. Every event is counted in bulk (int_usage_increments); the
-- events of metrics aggregated or priced one at a time are also kept one by one
-- (int_events_itemised), matched by the same definition (macros/metering.sql). A failure means
-- a line's events counted one way differ from the other (per load): its units and its amount
-- would come from different events.
{%- set catalog = metering_catalog() %}
with bulk as (
    select counts.invoice_line_id, counts.loaded_at, sum(counts.event_count) as event_count
    from {{ ref('int_line_event_counts') }} as counts
    inner join {{ ref('stg_catalog__charges') }} as charges
        on counts.charge_id = charges.charge_id
    where charges.metric_code in ({{ sql_text_list(catalog['itemised']) if catalog['itemised'] else "''" }})
    group by 1, 2
),

itemised as (
    select itemised.invoice_line_id, itemised.loaded_at, count(*) as event_count
    from {{ ref('int_events_itemised') }} as itemised
    where itemised.invoice_line_id is not null
        and itemised.metric_code in ({{ sql_text_list(catalog['itemised']) if catalog['itemised'] else "''" }})
    group by 1, 2
)

select
    coalesce(bulk.invoice_line_id, itemised.invoice_line_id) as invoice_line_id,
    coalesce(bulk.loaded_at, itemised.loaded_at) as loaded_at,
    bulk.event_count as bulk_event_count,
    itemised.event_count as itemised_event_count
from bulk
full outer join itemised
    on bulk.invoice_line_id = itemised.invoice_line_id
    and bulk.loaded_at = itemised.loaded_at
where coalesce(bulk.event_count, 0) <> coalesce(itemised.event_count, 0)
