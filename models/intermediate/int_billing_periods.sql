-- One row per subscription and billing period (docs/billing-calendar.md).
-- A plan's interval is weekly, monthly, quarterly, semiannual or yearly. Calendar billing
-- anchors periods on a Monday / the 1st / 1 January / 1 July; anniversary billing on the
-- subscription's start day. Period k starts at anchor + k intervals, always counted from the
-- anchor, so an anniversary on the 31st clamps to shorter months' last day and comes back
-- (31 Jan, 29 Feb, 31 Mar). Boundaries are local midnights in the customer's time zone,
-- converted to UTC (so a period may be 23 or 25 hours longer or shorter across a DST change);
-- the service part of a period is cut by the subscription's start and end. Periods are
-- spelled out up to the one that contains the run's as_of (or the subscription's end).
-- A subscription phase (int_subscriptions: its first plan, then each plan change) is billed
-- from the instant it takes effect to the one it ends.
with subscriptions as (
    select * from {{ ref('int_subscriptions') }}
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
        subscriptions.external_subscription_id,
        subscriptions.phase,
        subscriptions.customer_id,
        subscriptions.plan_code,
        subscriptions.started_at,
        subscriptions.ended_at,
        subscriptions.end_reason,
        subscriptions.billing_time,
        plans.billing_interval,
        {{ interval_months('plans.billing_interval') }} as interval_months,
        -- Months per usage period: one for a plan that bills its charges monthly.
        case when plans.bill_charges_monthly and {{ interval_months('plans.billing_interval') }} > 1 then 1
            else {{ interval_months('plans.billing_interval') }}
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
        and (subscriptions.ended_at is null or subscriptions.ended_at > subscriptions.started_at)
),

anchored as (
    select
        subscriptions_local.*,
        {{ billing_anchor('subscriptions_local.billing_time', 'subscriptions_local.billing_interval',
                          'subscriptions_local.started_local') }} as anchor_local
    from subscriptions_local
),

period_counts as (
    select
        anchored.*,
        -- An upper bound on the index of the period holding last_instant_local; periods that
        -- start after it are dropped below (an anniversary month may end before the bound).
        {{ period_index_bound('anchored.anchor_local', 'anchored.usage_months', 'anchored.last_instant_local') }}
            as last_period_index
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
        {{ period_boundary('period_counts.anchor_local', 'period_counts.usage_months', 'series.n') }}
            as period_start_local,
        {{ period_boundary('period_counts.anchor_local', 'period_counts.usage_months', 'series.n + 1') }}
            as period_end_local
    from period_counts
    cross join lateral {{ integer_series('period_counts.last_period_index + 1') }} as series
),

fee_periods_local as (
    select
        periods_local.*,
        {{ period_boundary('periods_local.anchor_local', 'periods_local.interval_months',
                           'periods_local.fee_period_index') }} as fee_period_start_local,
        {{ period_boundary('periods_local.anchor_local', 'periods_local.interval_months',
                           'periods_local.fee_period_index + 1') }} as fee_period_end_local
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
-- subscription's start and the trial's end, to the fee period's end or the instant the base fee
-- stops (fee_cut_at): the end of the phase, or for a phase upgraded away, the start of the switch
-- day (which belongs to the new plan). In arrears the fee covers the days used. In advance it was
-- invoiced in full when its service started; a stop inside the period is then a credit for the
-- unused days (docs/billing-calendar.md, "Plan changes").
fee_cuts as (
    select
        trials.*,
        case
            when trials.trial_end_at >= trials.started_at and trials.trial_end_at >= trials.fee_period_start_at
                then trials.trial_end_at
            when trials.started_at >= trials.fee_period_start_at then trials.started_at
            else trials.fee_period_start_at
        end as base_fee_start_at,
        case
            when trials.ended_at is null then cast(null as timestamp)
            when trials.end_reason = 'upgrade'
                then {{ to_utc(dbt.date_trunc('day', from_utc('trials.ended_at', 'trials.billing_timezone')),
                               'trials.billing_timezone') }}
            else trials.ended_at
        end as fee_cut_at
    from trials
),

base_fees as (
    select
        fee_cuts.*,
        case
            when fee_cuts.fee_cut_at is null or fee_cuts.fee_cut_at >= fee_cuts.fee_period_end_at
                then fee_cuts.fee_period_end_at
            when fee_cuts.is_pay_in_advance and fee_cuts.fee_cut_at > fee_cuts.base_fee_start_at
                then fee_cuts.fee_period_end_at
            else fee_cuts.fee_cut_at
        end as base_fee_end_at,
        -- In advance, a stop inside a period already invoiced credits the days after it.
        (fee_cuts.is_pay_in_advance and fee_cuts.fee_cut_at is not null
            and fee_cuts.fee_cut_at > fee_cuts.base_fee_start_at
            and fee_cuts.fee_cut_at < fee_cuts.fee_period_end_at) as has_unused_days,
        -- When the base fee is invoiced: at its start in advance; in arrears at the fee period's
        -- end, or with the phase's last usage when it ends inside the period.
        case
            when fee_cuts.is_pay_in_advance then fee_cuts.base_fee_start_at
            when fee_cuts.ended_at is not null and fee_cuts.ended_at < fee_cuts.fee_period_end_at then fee_cuts.ended_at
            else fee_cuts.fee_period_end_at
        end as base_fee_invoice_at
    from fee_cuts
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
        -- The last local day the base fee was used, when a stop leaves unused days (a credit).
        cast({{ dbt.dateadd('second', -1, from_utc('base_fees.fee_cut_at', 'base_fees.billing_timezone')) }} as date)
            as used_last_date,
        cast({{ dbt.dateadd('second', -1, from_utc('base_fees.fee_period_end_at', 'base_fees.billing_timezone')) }} as date)
            as fee_period_last_date,
        -- This usage period carries the fee period's base fee: the one holding the instant it is
        -- invoiced. The one where the fee's service ends closes the fee period (commitments), and
        -- the one where the phase ends carries a credit for unused in-advance days.
        (base_fees.base_fee_end_at > base_fees.period_start_at and base_fees.base_fee_end_at <= base_fees.period_end_at)
            as closes_fee_period,
        (base_fees.base_fee_start_at < base_fees.base_fee_end_at
            and case when base_fees.is_pay_in_advance
                then base_fees.base_fee_invoice_at >= base_fees.period_start_at
                    and base_fees.base_fee_invoice_at < base_fees.period_end_at
                else base_fees.base_fee_invoice_at > base_fees.period_start_at
                    and base_fees.base_fee_invoice_at <= base_fees.period_end_at
            end) as carries_base_fee,
        (base_fees.has_unused_days
            and base_fees.ended_at > base_fees.period_start_at and base_fees.ended_at <= base_fees.period_end_at)
            as carries_unused_days_credit
    from base_fees
    where base_fees.service_start_at < base_fees.service_end_at
),

final as (
    select
        {{ dbt.hash("service_days.subscription_id || '|' || cast(service_days.period_start_local as " ~ dbt.type_string() ~ ")") }}
            as billing_period_id,
        service_days.subscription_id,
        service_days.external_subscription_id,
        service_days.phase,
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
        service_days.base_fee_invoice_at,
        service_days.carries_base_fee,
        service_days.closes_fee_period,
        service_days.end_reason,
        service_days.ended_at as subscription_ended_at,
        case when service_days.carries_unused_days_credit
            then {{ dbt.datediff('service_days.used_last_date', 'service_days.fee_period_last_date', 'day') }}
            else 0
        end as unused_days,
        cast({{ dbt.dateadd('day', 1, 'service_days.used_last_date') }} as date) as unused_start_date,
        service_days.fee_period_last_date,
        (service_days.service_end_at <= {{ as_of_timestamp() }}) as is_closed
    from service_days
    inner join currencies
        on service_days.currency = currencies.currency_code
)

select * from final
