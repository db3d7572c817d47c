{{
    config(
        materialized=row_replacing_materialization(),
        incremental_strategy=row_replacing_strategy(),
        unique_key='invoice_line_id',
    )
}}
-- One row per invoice line that has events: subscription x billing period x charge, with
-- the period's aggregates from which every aggregation type derives its units
-- (int_charge_units): sum, count, max, the latest value, the values added (unique counts) and
-- the value x seconds to the end of service (time-weighted sums).
-- Incremental: only the lines that received events since the last run are re-aggregated from
-- their events; untouched periods are not read.
with matched_events as (
    select * from {{ ref('int_events_matched') }}
    where invoice_line_id is not null
),

billing_periods as (
    select * from {{ ref('int_billing_periods') }}
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

line_events as (
    select
        matched_events.*,
        {{ seconds_between('matched_events.event_at', 'billing_periods.service_end_at') }}
            as seconds_to_service_end,
        first_value(matched_events.units) over (
            partition by matched_events.invoice_line_id
            order by matched_events.event_at desc, matched_events.event_id desc
            rows between unbounded preceding and unbounded following
        ) as latest_value
    from matched_events
    inner join billing_periods
        on matched_events.billing_period_id = billing_periods.billing_period_id
    {% if is_incremental() %}
    inner join touched_lines
        on matched_events.invoice_line_id = touched_lines.invoice_line_id
    {% endif %}
),

final as (
    select
        line_events.invoice_line_id,
        line_events.billing_period_id,
        line_events.charge_id,
        line_events.group_key,
        line_events.subscription_id,
        cast(sum(line_events.units) as {{ quantity_type() }}) as units,
        count(*) as event_count,
        cast(max(line_events.units) as {{ quantity_type() }}) as max_value,
        cast(max(line_events.latest_value) as {{ quantity_type() }}) as latest_value,
        count(distinct case when line_events.operation_type = 'add' then line_events.unique_value end)
            as added_value_count,
        cast(sum(line_events.units * line_events.seconds_to_service_end) as {{ quantity_type() }})
            as weighted_seconds_value,
        min(line_events.event_at) as first_event_at,
        max(line_events.event_at) as last_event_at,
        max(line_events.matched_at) as last_matched_at
    from line_events
    group by 1, 2, 3, 4, 5
)

select * from final
