-- One row per billing period, recurring unique_count price, pricing group (group_key '' when
-- the charge has none) and value active at some time in the period (seats, licences), with
-- when it became active in it. A value is active from an `add` until a `remove`; values active
-- when the period starts carry over from earlier periods of the subscription (active from the
-- period's start), and a value added in the period counts once even if it is removed again.
-- int_unique_count_units counts them; progressive billing counts those active before each
-- checkpoint (int_usage_checkpoints).
with billing_periods as (
    select * from {{ ref('int_billing_periods') }}
),

charges as (
    select * from {{ ref('stg_catalog__charges') }}
    where aggregation = 'unique_count' and is_recurring
),

matched_events as (
    select * from {{ ref('int_events_itemised') }}
    where invoice_line_id is not null and unique_value is not null
),

-- Values are followed per subscription (all its phases: a plan change keeps the seats) and
-- price key (the metric and filter values), so they carry across a plan change.
value_events as (
    select
        billing_periods.external_subscription_id,
        charges.price_key,
        coalesce(matched_events.group_key, '') as group_key,
        matched_events.unique_value,
        matched_events.operation_type,
        matched_events.event_at,
        matched_events.event_id
    from matched_events
    inner join charges
        on matched_events.charge_id = charges.charge_id
    inner join billing_periods
        on matched_events.billing_period_id = billing_periods.billing_period_id
),

periods as (
    select
        billing_periods.billing_period_id,
        billing_periods.external_subscription_id,
        billing_periods.service_start_at,
        billing_periods.service_end_at,
        charges.charge_id,
        series.price_key,
        series.group_key
    from billing_periods
    inner join (select distinct external_subscription_id, price_key, group_key from value_events) as series
        on billing_periods.external_subscription_id = series.external_subscription_id
    inner join charges
        on billing_periods.plan_code = charges.plan_code
        and series.price_key = charges.price_key
),

operations_before as (
    select
        periods.billing_period_id,
        periods.charge_id,
        periods.group_key,
        value_events.unique_value,
        value_events.operation_type,
        row_number() over (
            partition by periods.billing_period_id, periods.charge_id, periods.group_key, value_events.unique_value
            order by value_events.event_at desc, value_events.event_id desc
        ) as recency
    from periods
    inner join value_events
        on periods.external_subscription_id = value_events.external_subscription_id
        and periods.price_key = value_events.price_key
        and periods.group_key = value_events.group_key
        -- At the start instant too: a value removed exactly when the period starts is not active
        -- in it (active from an add until a remove, the remove's instant excluded).
        and value_events.event_at <= periods.service_start_at
),

-- Each active value, from when it is active in the period: the period's start for a value
-- carried in, else its first add in the period.
active_values as (
    select operations_before.billing_period_id, operations_before.charge_id, operations_before.group_key,
        operations_before.unique_value, periods.service_start_at as first_active_at
    from operations_before
    inner join periods
        on operations_before.billing_period_id = periods.billing_period_id
        and operations_before.charge_id = periods.charge_id
        and operations_before.group_key = periods.group_key
    where operations_before.recency = 1 and operations_before.operation_type = 'add'

    union all

    select periods.billing_period_id, periods.charge_id, periods.group_key, value_events.unique_value,
        value_events.event_at as first_active_at
    from periods
    inner join value_events
        on periods.external_subscription_id = value_events.external_subscription_id
        and periods.price_key = value_events.price_key
        and periods.group_key = value_events.group_key
        and value_events.event_at >= periods.service_start_at
        and value_events.event_at < periods.service_end_at
    where value_events.operation_type = 'add'
),

final as (
    select
        active_values.billing_period_id,
        active_values.charge_id,
        active_values.group_key,
        active_values.unique_value,
        min(active_values.first_active_at) as first_active_at
    from active_values
    group by 1, 2, 3, 4
)

select * from final
