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
                    / (1.0 * anchored.interval_months)
            end
        ) as integer) as last_period_index
    from anchored
),

periods_local as (
    select
        period_counts.*,
        series.n as period_index,
        cast(case when period_counts.interval_months = 0
            then {{ dbt.dateadd('day', '7 * series.n', 'period_counts.anchor_local') }}
            else {{ dbt.dateadd('month', 'period_counts.interval_months * series.n', 'period_counts.anchor_local') }}
        end as timestamp) as period_start_local,
        cast(case when period_counts.interval_months = 0
            then {{ dbt.dateadd('day', '7 * (series.n + 1)', 'period_counts.anchor_local') }}
            else {{ dbt.dateadd('month', 'period_counts.interval_months * (series.n + 1)', 'period_counts.anchor_local') }}
        end as timestamp) as period_end_local
    from period_counts
    cross join lateral {{ integer_series('period_counts.last_period_index + 1') }} as series
),

periods as (
    select
        periods_local.*,
        {{ to_utc('periods_local.period_start_local', 'periods_local.billing_timezone') }} as period_start_at,
        {{ to_utc('periods_local.period_end_local', 'periods_local.billing_timezone') }} as period_end_at
    from periods_local
    where periods_local.period_start_local <= periods_local.last_instant_local
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

service_days as (
    select
        service.*,
        cast({{ from_utc('service.service_start_at', 'service.billing_timezone') }} as date) as service_start_date,
        -- The last local day that has service: a subscription that ends at 13:00 uses that day.
        cast({{ dbt.dateadd('second', -1, from_utc('service.service_end_at', 'service.billing_timezone')) }} as date)
            as service_last_date
    from service
    where service.service_start_at < service.service_end_at
),

final as (
    select
        {{ dbt.hash("service_days.subscription_id || '|' || cast(service_days.period_start_local as " ~ dbt.type_string() ~ ")") }}
            as billing_period_id,
        service_days.subscription_id,
        service_days.customer_id,
        service_days.plan_code,
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
        (service_days.service_end_at <= {{ as_of_timestamp() }}) as is_closed
    from service_days
    inner join currencies
        on service_days.currency = currencies.currency_code
)

select * from final
