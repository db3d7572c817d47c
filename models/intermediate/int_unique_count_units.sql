-- One row per billing period, recurring unique_count price and pricing group (group_key '' when
-- the charge has none): how many distinct values were active at some time in the period
-- (int_unique_count_values), zero for a period whose subscription has values but none then.
with billing_periods as (
    select * from {{ ref('int_billing_periods') }}
),

charges as (
    select * from {{ ref('stg_catalog__charges') }}
    where aggregation = 'unique_count' and is_recurring
),

active_values as (
    select * from {{ ref('int_unique_count_values') }}
),

matched_events as (
    select * from {{ ref('int_events_matched') }}
    where invoice_line_id is not null and unique_value is not null
),

series as (
    select distinct billing_periods.external_subscription_id, charges.price_key,
        coalesce(matched_events.group_key, '') as group_key
    from matched_events
    inner join charges
        on matched_events.charge_id = charges.charge_id
    inner join billing_periods
        on matched_events.billing_period_id = billing_periods.billing_period_id
),

periods as (
    select
        billing_periods.billing_period_id,
        charges.charge_id,
        series.group_key
    from billing_periods
    inner join series
        on billing_periods.external_subscription_id = series.external_subscription_id
    inner join charges
        on billing_periods.plan_code = charges.plan_code
        and series.price_key = charges.price_key
),

final as (
    select
        periods.billing_period_id,
        periods.charge_id,
        periods.group_key,
        count(distinct active_values.unique_value) as active_value_count
    from periods
    left join active_values
        on periods.billing_period_id = active_values.billing_period_id
        and periods.charge_id = active_values.charge_id
        and periods.group_key = active_values.group_key
    group by 1, 2, 3
)

select * from final
