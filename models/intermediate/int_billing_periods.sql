-- One row per subscription and billing period (docs/billing-calendar.md).
-- A plan's interval is weekly, monthly, quarterly, semiannual or yearly. Calendar billing
-- anchors periods on a Monday / the 1st / 1 January / 1 July; anniversary billing on the
-- subscription's start day. Period k starts at anchor + k intervals, always counted from the
-- anchor, so an anniversary on the 31st clamps to shorter months' last day and comes back
-- (31 Jan, 29 Feb, 31 Mar). Boundaries are local midnights in the customer's time zone,
-- converted to UTC (so a period may be 23 or 25 hours longer or shorter across a DST change);
-- the service part of a period is cut by the subscription's start and end. Periods are
-- spelled out up to the one that contains the run's as_of (or the subscription's end).
with subscriptions as (
    select * from {{ ref('stg_catalog__subscriptions') }}
),

customers as (
    select * from {{ ref('stg_catalog__customers') }}
),

plans as (
    select * from {{ ref('stg_catalog__plans') }}
),

currencies as (
    select * from {{ ref('currencies') }}
),

subscriptions_local as (
    select
        subscriptions.subscription_id,
        subscriptions.customer_id,
        subscriptions.plan_code,
        subscriptions.started_at,
        subscriptions.ended_at,
        subscriptions.billing_time,
        plans.billing_interval,
        -- Months per period; 0 for weekly periods (counted in days).
        case plans.billing_interval
            when 'monthly' then 1
            when 'quarterly' then 3
            when 'semiannual' then 6
            when 'yearly' then 12
            else 0
        end as interval_months,
        -- Months per usage period: one for a plan that bills its charges monthly.
        case when plans.bill_charges_monthly and plans.billing_interval in ('quarterly', 'semiannual', 'yearly')
            then 1
            else case plans.billing_interval
                when 'monthly' then 1 when 'quarterly' then 3 when 'semiannual' then 6 when 'yearly' then 12 else 0
            end
        end as usage_months,
        plans.base_plan_code,
        plans.is_pay_in_advance,
        plans.trial_period_days,
        customers.billing_timezone,
        customers.currency,
        {{ from_utc('subscriptions.started_at', 'customers.billing_timezone') }} as started_local,
        {{ from_utc(
            'case when subscriptions.ended_at is not null and subscriptions.ended_at < ' ~ as_of_timestamp()
            ~ ' then subscriptions.ended_at else ' ~ as_of_timestamp() ~ ' end',
            'customers.billing_timezone') }} as last_instant_local
    from subscriptions
    inner join customers
        on subscriptions.customer_id = customers.customer_id
    inner join plans
        on subscriptions.plan_code = plans.plan_code
    where subscriptions.started_at < {{ as_of_timestamp() }}
),

anchored as (
    select
        subscriptions_local.*,
        cast(
            case
                when subscriptions_local.billing_time = 'anniversary'
                    then {{ dbt.date_trunc('day', 'subscriptions_local.started_local') }}
                when subscriptions_local.billing_interval = 'weekly'
                    then {{ dbt.date_trunc('week', 'subscriptions_local.started_local') }}
                when subscriptions_local.billing_interval = 'monthly'
                    then {{ dbt.date_trunc('month', 'subscriptions_local.started_local') }}
                when subscriptions_local.billing_interval = 'quarterly'
                    then {{ dbt.date_trunc('quarter', 'subscriptions_local.started_local') }}
                when subscriptions_local.billing_interval = 'semiannual'
                    then {{ dbt.dateadd(
                        'month',
                        'case when extract(month from subscriptions_local.started_local) >= 7 then 6 else 0 end',
                        dbt.date_trunc('year', 'subscriptions_local.started_local')) }}
                else {{ dbt.date_trunc('year', 'subscriptions_local.started_local') }}
            end
            as timestamp
        ) as anchor_local
    from subscriptions_local
),

period_counts as (
    select
        anchored.*,
        -- An upper bound on the index of the period holding last_instant_local; periods that
        -- start after it are dropped below (an anniversary month may end before the bound).
        cast(floor(
            case when anchored.interval_months = 0
                then {{ dbt.datediff('anchored.anchor_local', 'anchored.last_instant_local', 'day') }} / 7.0
                else {{ dbt.datediff('anchored.anchor_local', 'anchored.last_instant_local', 'month') }}
                    / (1.0 * anchored.usage_months)
            end
        ) as integer) as last_period_index
    from anchored
),

-- Usage periods: the plan's periods, or the months of them for a plan billing charges monthly.
-- Each knows the plan period (fee period) it belongs to, which carries the base fee.
periods_local as (
    select
        period_counts.*,
        series.n as period_index,
        cast(case when period_counts.interval_months = 0 then series.n
            else floor(series.n * period_counts.usage_months / (1.0 * period_counts.interval_months))
        end as integer) as fee_period_index,
        cast(case when period_counts.interval_months = 0
            then {{ dbt.dateadd('day', '7 * series.n', 'period_counts.anchor_local') }}
            else {{ dbt.dateadd('month', 'period_counts.usage_months * series.n', 'period_counts.anchor_local') }}
        end as timestamp) as period_start_local,
        cast(case when period_counts.interval_months = 0
            then {{ dbt.dateadd('day', '7 * (series.n + 1)', 'period_counts.anchor_local') }}
            else {{ dbt.dateadd('month', 'period_counts.usage_months * (series.n + 1)', 'period_counts.anchor_local') }}
        end as timestamp) as period_end_local
    from period_counts
    cross join lateral {{ integer_series('period_counts.last_period_index + 1') }} as series
),

fee_periods_local as (
    select
        periods_local.*,
        cast(case when periods_local.interval_months = 0 then periods_local.period_start_local
            else {{ dbt.dateadd('month', 'periods_local.interval_months * periods_local.fee_period_index',
                                'periods_local.anchor_local') }}
        end as timestamp) as fee_period_start_local,
        cast(case when periods_local.interval_months = 0 then periods_local.period_end_local
            else {{ dbt.dateadd('month', 'periods_local.interval_months * (periods_local.fee_period_index + 1)',
                                'periods_local.anchor_local') }}
        end as timestamp) as fee_period_end_local
    from periods_local
),

periods as (
    select
        fee_periods_local.*,
        {{ to_utc('fee_periods_local.period_start_local', 'fee_periods_local.billing_timezone') }} as period_start_at,
        {{ to_utc('fee_periods_local.period_end_local', 'fee_periods_local.billing_timezone') }} as period_end_at,
        {{ to_utc('fee_periods_local.fee_period_start_local', 'fee_periods_local.billing_timezone') }}
            as fee_period_start_at,
        {{ to_utc('fee_periods_local.fee_period_end_local', 'fee_periods_local.billing_timezone') }}
            as fee_period_end_at
    from fee_periods_local
    where fee_periods_local.period_start_local <= fee_periods_local.last_instant_local
),

service as (
    select
        periods.*,
        case when periods.started_at > periods.period_start_at
            then periods.started_at else periods.period_start_at end as service_start_at,
        case when periods.ended_at is not null and periods.ended_at < periods.period_end_at
            then periods.ended_at else periods.period_end_at end as service_end_at
    from periods
),

-- A trial covers whole local days from the start day: the base fee starts at the local
-- midnight after them (usage is billed during the trial as always).
trials as (
    select
        service.*,
        {{ to_utc(dbt.dateadd('day', 'service.trial_period_days',
                              dbt.date_trunc('day', 'service.started_local')), 'service.billing_timezone') }}
            as trial_end_at
    from service
),

-- The base fee's service in the fee period: from the latest of the fee period's start, the
-- subscription's start and the trial's end, to the earliest of the fee period's end and the
-- subscription's end (known in advance, even when it is after as_of).
base_fees as (
    select
        trials.*,
        case
            when trials.trial_end_at >= trials.started_at and trials.trial_end_at >= trials.fee_period_start_at
                then trials.trial_end_at
            when trials.started_at >= trials.fee_period_start_at then trials.started_at
            else trials.fee_period_start_at
        end as base_fee_start_at,
        case when trials.ended_at is not null and trials.ended_at < trials.fee_period_end_at
            then trials.ended_at else trials.fee_period_end_at end as base_fee_end_at
    from trials
),

service_days as (
    select
        base_fees.*,
        cast({{ from_utc('base_fees.service_start_at', 'base_fees.billing_timezone') }} as date) as service_start_date,
        -- The last local day that has service: a subscription that ends at 13:00 uses that day.
        cast({{ dbt.dateadd('second', -1, from_utc('base_fees.service_end_at', 'base_fees.billing_timezone')) }} as date)
            as service_last_date,
        cast({{ from_utc('base_fees.base_fee_start_at', 'base_fees.billing_timezone') }} as date) as base_fee_start_date,
        cast({{ dbt.dateadd('second', -1, from_utc('base_fees.base_fee_end_at', 'base_fees.billing_timezone')) }} as date)
            as base_fee_last_date,
        -- This usage period carries the fee period's base fee: the one where the fee's service
        -- starts (in advance) or ends (in arrears). Its end also closes the fee period (commitments).
        (base_fees.base_fee_end_at > base_fees.period_start_at and base_fees.base_fee_end_at <= base_fees.period_end_at)
            as closes_fee_period,
        (base_fees.base_fee_start_at < base_fees.base_fee_end_at
            and case when base_fees.is_pay_in_advance
                then base_fees.base_fee_start_at >= base_fees.period_start_at
                    and base_fees.base_fee_start_at < base_fees.period_end_at
                else base_fees.base_fee_end_at > base_fees.period_start_at
                    and base_fees.base_fee_end_at <= base_fees.period_end_at
            end) as carries_base_fee
    from base_fees
    where base_fees.service_start_at < base_fees.service_end_at
),

final as (
    select
        {{ dbt.hash("service_days.subscription_id || '|' || cast(service_days.period_start_local as " ~ dbt.type_string() ~ ")") }}
            as billing_period_id,
        service_days.subscription_id,
        service_days.customer_id,
        service_days.plan_code,
        service_days.base_plan_code,
        service_days.billing_interval,
        service_days.billing_time,
        service_days.period_index,
        service_days.currency,
        currencies.minor_unit,
        service_days.billing_timezone,
        cast(service_days.period_start_local as date) as period_start_date,
        cast({{ dbt.dateadd('day', -1, 'service_days.period_end_local') }} as date) as period_end_date,
        service_days.period_start_at,
        service_days.period_end_at,
        service_days.service_start_at,
        service_days.service_end_at,
        service_days.service_start_date,
        service_days.service_last_date,
        {{ dbt.datediff('service_days.period_start_local', 'service_days.period_end_local', 'day') }}
            as days_in_period,
        {{ dbt.datediff('service_days.service_start_date', 'service_days.service_last_date', 'day') }} + 1
            as billed_days,
        -- The fee period (the plan's interval) and its base fee, on the usage period that carries it.
        service_days.fee_period_index,
        service_days.fee_period_start_at,
        service_days.fee_period_end_at,
        {{ dbt.datediff('service_days.fee_period_start_local', 'service_days.fee_period_end_local', 'day') }}
            as fee_days_in_period,
        service_days.trial_end_at,
        service_days.base_fee_start_at,
        service_days.base_fee_end_at,
        service_days.base_fee_start_date,
        service_days.base_fee_last_date,
        case when service_days.base_fee_start_at < service_days.base_fee_end_at
            then {{ dbt.datediff('service_days.base_fee_start_date', 'service_days.base_fee_last_date', 'day') }} + 1
            else 0
        end as base_fee_days,
        service_days.carries_base_fee,
        service_days.closes_fee_period,
        (service_days.service_end_at <= {{ as_of_timestamp() }}) as is_closed
    from service_days
    inner join currencies
        on service_days.currency = currencies.currency_code
)

select * from final
