-- One row per invoice line that has events, with the period's aggregates from which every
-- aggregation type derives its units (int_charge_units): the events and the sum of their
-- units (from the bulk counts, int_usage_increments), and, for the metrics aggregated one
-- event at a time (int_events_itemised), the largest value, the values added (unique counts),
-- the value x seconds to the end of service (time-weighted sums) and, for metrics aggregated
-- by it, the latest value. A charge paid in advance has a line per event.
-- A table rebuilt every run from those two: both are small next to the events (the increments
-- hold a row per line, day and load; the itemised events are a small share of all events).
with increments as (
    select * from {{ ref('int_usage_increments') }}
    where invoice_line_id is not null
),

itemised as (
    select * from {{ ref('int_events_itemised') }}
    where invoice_line_id is not null
),

billing_periods as (
    select * from {{ ref('int_billing_periods') }}
),

counted as (
    select
        increments.invoice_line_id,
        increments.billing_period_id,
        increments.charge_id,
        increments.group_key,
        increments.subscription_id,
        sum(increments.event_count) as event_count,
        sum(increments.units) as units,
        max(case when increments.event_count > 0 then increments.usage_date end) as last_usage_date
    from increments
    group by 1, 2, 3, 4, 5
    -- A line whose only events were duplicates has none.
    having sum(increments.event_count) > 0

    union all

    select
        itemised.invoice_line_id,
        itemised.billing_period_id,
        itemised.charge_id,
        itemised.group_key,
        itemised.subscription_id,
        count(*) as event_count,
        sum(itemised.units) as units,
        max(itemised.usage_date) as last_usage_date
    from itemised
    where itemised.is_pay_in_advance
    group by 1, 2, 3, 4, 5
),

line_events as (
    select
        itemised.*,
        {{ seconds_between('itemised.event_at', 'billing_periods.service_end_at') }} as seconds_to_service_end
    from itemised
    inner join billing_periods
        on itemised.billing_period_id = billing_periods.billing_period_id
),

event_values as (
    select
        line_events.invoice_line_id,
        max(line_events.units) as max_value,
        count(distinct case when line_events.operation_type = 'add' then line_events.unique_value end)
            as added_value_count,
        sum(line_events.units * line_events.seconds_to_service_end) as weighted_seconds_value
    from line_events
    group by 1
),

-- Only a metric aggregated by its latest value needs its events in order: the window sorts
-- those alone, not every event kept one by one (whose number grows with the history).
latest_charges as (
    select charges.charge_id
    from {{ ref('stg_catalog__charges') }} as charges
    where charges.aggregation = 'latest'
),

latest_events as (
    select
        itemised.invoice_line_id,
        itemised.units,
        row_number() over (
            partition by itemised.invoice_line_id
            order by itemised.event_at desc, itemised.event_id desc
        ) as recency
    from itemised
    inner join latest_charges
        on itemised.charge_id = latest_charges.charge_id
),

latest_values as (
    select latest_events.invoice_line_id, latest_events.units as latest_value
    from latest_events
    where latest_events.recency = 1
),

final as (
    select
        counted.invoice_line_id,
        counted.billing_period_id,
        counted.charge_id,
        counted.group_key,
        counted.subscription_id,
        cast(counted.units as {{ quantity_type() }}) as units,
        cast(counted.event_count as bigint) as event_count,
        cast(event_values.max_value as {{ quantity_type() }}) as max_value,
        cast(latest_values.latest_value as {{ quantity_type() }}) as latest_value,
        coalesce(event_values.added_value_count, 0) as added_value_count,
        cast(event_values.weighted_seconds_value as {{ quantity_type() }}) as weighted_seconds_value,
        counted.last_usage_date
    from counted
    left join event_values
        on counted.invoice_line_id = event_values.invoice_line_id
    left join latest_values
        on counted.invoice_line_id = latest_values.invoice_line_id
)

select * from final
