-- One row per subscription and billing period (monthly, calendar billing).
-- Period boundaries are the 1st of the month at midnight in the customer's time zone,
-- converted to UTC; the service part of a period is cut by the subscription's start and end.
-- Periods are spelled out up to the one that contains the run's as_of.
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
        customers.billing_timezone,
        customers.currency,
        {{ dbt.date_trunc('month', from_utc('subscriptions.started_at', 'customers.billing_timezone')) }}
            as first_period_start_local,
        {{ dbt.date_trunc('month', from_utc(
            'case when subscriptions.ended_at is not null and subscriptions.ended_at < ' ~ as_of_timestamp()
            ~ ' then subscriptions.ended_at else ' ~ as_of_timestamp() ~ ' end',
            'customers.billing_timezone')) }}
            as last_period_start_local
    from subscriptions
    inner join customers
        on subscriptions.customer_id = customers.customer_id
    where subscriptions.started_at < {{ as_of_timestamp() }}
),

periods_local as (
    select
        subscriptions_local.*,
        cast({{ dbt.dateadd('month', 'series.n', 'subscriptions_local.first_period_start_local') }} as timestamp)
            as period_start_local,
        cast({{ dbt.dateadd('month', 'series.n + 1', 'subscriptions_local.first_period_start_local') }} as timestamp)
            as period_end_local
    from subscriptions_local
    cross join lateral {{ integer_series(dbt.datediff(
        'subscriptions_local.first_period_start_local', 'subscriptions_local.last_period_start_local', 'month')) }}
        as series
),

periods as (
    select
        periods_local.*,
        {{ to_utc('periods_local.period_start_local', 'periods_local.billing_timezone') }} as period_start_at,
        {{ to_utc('periods_local.period_end_local', 'periods_local.billing_timezone') }} as period_end_at
    from periods_local
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
