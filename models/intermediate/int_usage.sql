{{
    config(
        materialized='incremental',
        incremental_strategy='delete+insert',
        unique_key='invoice_line_id',
    )
}}
-- One row per invoice line that has events: subscription x billing period x charge, with
-- the aggregated units. Incremental: only the lines that received events since the last
-- run are re-aggregated (count and sum re-add their period's events; untouched periods are
-- not read).
with matched_events as (
    select * from {{ ref('int_events_matched') }}
    where invoice_line_id is not null
),

{% if is_incremental() %}
touched_lines as (
    select distinct matched_events.invoice_line_id
    from matched_events
    where matched_events.matched_at > (
        select coalesce(max(last_matched_at), cast('1900-01-01' as timestamp)) from {{ this }}
    )
),
{% endif %}

final as (
    select
        matched_events.invoice_line_id,
        matched_events.billing_period_id,
        matched_events.charge_id,
        matched_events.subscription_id,
        cast(sum(matched_events.units) as {{ quantity_type() }}) as units,
        count(*) as event_count,
        min(matched_events.event_at) as first_event_at,
        max(matched_events.event_at) as last_event_at,
        max(matched_events.matched_at) as last_matched_at
    from matched_events
    {% if is_incremental() %}
    inner join touched_lines
        on matched_events.invoice_line_id = touched_lines.invoice_line_id
    {% endif %}
    group by 1, 2, 3, 4
)

select * from final
