-- One row per charge fee (subscription x billing period x price [x pricing group]): the
-- units its charge model prices, by the metric's aggregation (docs/billable-metrics.md):
-- count: events; sum: their field, carried across periods when recurring; max: the largest
-- value; latest: the last value (never below 0); unique_count: distinct values added (recurring:
-- active at some time in the period); weighted_sum: the time-weighted level over the service,
-- starting from the level carried from earlier periods when recurring. Then the metric's
-- rounding (round, ceil or floor to a step of 10^-precision).
with billing_periods as (
    select * from {{ ref('int_billing_periods') }}
),

charges as (
    select * from {{ ref('stg_catalog__charges') }}
),

usage as (
    select * from {{ ref('int_usage') }}
),

unique_counts as (
    select * from {{ ref('int_unique_count_units') }}
),

-- The fees billed in arrears (in-advance ones are int_in_advance_fees): every period x price of
-- a charge without pricing groups (a line even without events); for grouped charges, each group a period has events for, and for recurring metrics
-- also every later period of the subscription (the level carries on).
groups_seen as (
    select
        usage.subscription_id,
        usage.charge_id,
        usage.group_key,
        min(billing_periods.period_start_at) as first_period_start_at
    from usage
    inner join billing_periods
        on usage.billing_period_id = billing_periods.billing_period_id
    where usage.group_key is not null
    group by 1, 2, 3
),

fee_keys as (
    select
        billing_periods.billing_period_id,
        charges.charge_id,
        cast(null as {{ dbt.type_string() }}) as group_key
    from billing_periods
    inner join charges
        on billing_periods.plan_code = charges.plan_code
    where charges.group_key_1 is null
        and not charges.is_pay_in_advance

    union all

    select
        billing_periods.billing_period_id,
        charges.charge_id,
        groups_seen.group_key
    from billing_periods
    inner join charges
        on billing_periods.plan_code = charges.plan_code
    inner join groups_seen
        on billing_periods.subscription_id = groups_seen.subscription_id
        and charges.charge_id = groups_seen.charge_id
    left join usage
        on usage.billing_period_id = billing_periods.billing_period_id
        and usage.charge_id = charges.charge_id
        and usage.group_key = groups_seen.group_key
    where not charges.is_pay_in_advance
        and (usage.invoice_line_id is not null
            or (charges.is_recurring and billing_periods.period_start_at >= groups_seen.first_period_start_at))
),

charge_fees as (
    select
        {{ dbt.hash("fee_keys.billing_period_id || '|' || fee_keys.charge_id"
                    ~ " || coalesce('|' || fee_keys.group_key, '')") }} as invoice_line_id,
        billing_periods.billing_period_id,
        billing_periods.subscription_id,
        billing_periods.external_subscription_id,
        billing_periods.period_start_at,
        billing_periods.service_start_at,
        {{ seconds_between('billing_periods.service_start_at', 'billing_periods.service_end_at') }}
            as service_seconds,
        charges.charge_id,
        charges.price_key,
        fee_keys.group_key,
        charges.aggregation,
        charges.is_recurring,
        charges.rounding_function,
        charges.rounding_step,
        coalesce(usage.units, 0) as period_sum,
        coalesce(usage.event_count, 0) as event_count,
        coalesce(usage.max_value, 0) as max_value,
        coalesce(usage.latest_value, 0) as latest_value,
        coalesce(usage.added_value_count, 0) as added_value_count,
        coalesce(usage.weighted_seconds_value, 0) as weighted_seconds_value,
        coalesce(unique_counts.active_value_count, 0) as active_value_count
    from fee_keys
    inner join billing_periods
        on fee_keys.billing_period_id = billing_periods.billing_period_id
    inner join charges
        on fee_keys.charge_id = charges.charge_id
    left join usage
        on usage.billing_period_id = fee_keys.billing_period_id
        and usage.charge_id = fee_keys.charge_id
        and coalesce(usage.group_key, '') = coalesce(fee_keys.group_key, '')
    left join unique_counts
        on unique_counts.billing_period_id = fee_keys.billing_period_id
        and unique_counts.charge_id = fee_keys.charge_id
        and unique_counts.group_key = coalesce(fee_keys.group_key, '')
),

carried as (
    select
        charge_fees.*,
        -- The level reached before this period: what recurring metrics start from. It carries
        -- across plan changes (phases of one subscription) between prices of the same key.
        coalesce(sum(charge_fees.period_sum) over (
            partition by charge_fees.external_subscription_id, charge_fees.price_key, charge_fees.group_key
            order by charge_fees.service_start_at
            rows between unbounded preceding and 1 preceding
        ), 0) as level_before
    from charge_fees
),

aggregated as (
    select
        carried.*,
        cast(
            case carried.aggregation
                when 'count' then carried.event_count
                when 'sum' then
                    case when carried.is_recurring then carried.level_before + carried.period_sum
                        else carried.period_sum end
                when 'max' then carried.max_value
                when 'latest' then case when carried.latest_value < 0 then 0 else carried.latest_value end
                when 'unique_count' then
                    case when carried.is_recurring then carried.active_value_count
                        else carried.added_value_count end
                when 'weighted_sum' then
                    case when carried.service_seconds > 0 then {{ divide_exactly(
                        "case when carried.is_recurring then carried.level_before else 0 end"
                        ~ " * carried.service_seconds + carried.weighted_seconds_value",
                        "carried.service_seconds") }}
                    else 0 end
            end
            as {{ quantity_type() }}
        ) as aggregated_units
    from carried
),

final as (
    select
        aggregated.invoice_line_id,
        aggregated.billing_period_id,
        aggregated.charge_id,
        aggregated.group_key,
        aggregated.aggregation,
        aggregated.event_count,
        aggregated.aggregated_units,
        aggregated.level_before,
        {{ rounded_units('aggregated.aggregated_units', 'aggregated.rounding_function', 'aggregated.rounding_step') }}
            as units
    from aggregated
)

select * from final
