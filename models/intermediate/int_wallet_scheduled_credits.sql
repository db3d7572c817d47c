-- One row per credit addition to a wallet known in advance, up to the run's as_of: the
-- transactions written in wallets.yml and the interval top-ups, added at the start of every
-- calendar interval (in the customer's time zone) after the wallet opened and before it
-- expires. amount = credits x the wallet's rate, a whole number of minor units (the catalog
-- checks it). Threshold top-ups depend on spending: int_wallet_threshold_top_ups.
with wallets as (
    select * from {{ ref('stg_catalog__wallets') }}
),

transactions as (
    select * from {{ ref('stg_catalog__wallet_transactions') }}
),

top_ups as (
    select * from {{ ref('stg_catalog__wallet_top_ups') }}
    where top_up_interval is not null
),

top_up_calendar as (
    select
        top_ups.*,
        wallets.billing_timezone,
        wallets.started_at,
        wallets.expires_at,
        {{ interval_months('top_ups.top_up_interval') }} as interval_months,
        {{ billing_anchor("'calendar'", 'top_ups.top_up_interval',
                          from_utc('wallets.started_at', 'wallets.billing_timezone')) }} as anchor_local,
        {{ from_utc(as_of_timestamp(), 'wallets.billing_timezone') }} as as_of_local
    from top_ups
    inner join wallets
        on top_ups.wallet_id = wallets.wallet_id
),

top_up_counts as (
    select
        top_up_calendar.*,
        {{ period_index_bound('top_up_calendar.anchor_local', 'top_up_calendar.interval_months',
                              'top_up_calendar.as_of_local') }} as last_index
    from top_up_calendar
),

top_up_instants as (
    select
        top_up_counts.wallet_id,
        top_up_counts.position,
        top_up_counts.credit_kind,
        top_up_counts.credits,
        top_up_counts.expires_at,
        top_up_counts.started_at,
        series.n as occurrence,
        {{ to_utc(period_boundary('top_up_counts.anchor_local', 'top_up_counts.interval_months', 'series.n'),
                  'top_up_counts.billing_timezone') }} as credited_at
    from top_up_counts
    cross join lateral {{ integer_series('top_up_counts.last_index') }} as series
    where series.n >= 1
),

every_credit as (
    select
        transactions.wallet_id,
        'transaction' as source_kind,
        transactions.position,
        0 as occurrence,
        transactions.transaction_at as credited_at,
        transactions.credit_kind,
        transactions.credits
    from transactions
    union all
    select
        top_up_instants.wallet_id,
        'interval_top_up' as source_kind,
        top_up_instants.position,
        top_up_instants.occurrence,
        top_up_instants.credited_at,
        top_up_instants.credit_kind,
        top_up_instants.credits
    from top_up_instants
    where top_up_instants.credited_at > top_up_instants.started_at
        and top_up_instants.credited_at <= {{ as_of_timestamp() }}
        and (top_up_instants.expires_at is null or top_up_instants.credited_at < top_up_instants.expires_at)
),

final as (
    select
        -- Ids hash 'top_up' for an interval top-up, as before threshold top-ups existed, so
        -- that its purchase invoices keep their ids.
        {{ dbt.hash("every_credit.wallet_id || '|' || case when every_credit.source_kind = 'interval_top_up' then 'top_up' else every_credit.source_kind end || '|' || cast(every_credit.position as " ~ dbt.type_string() ~ ") || '|' || cast(every_credit.occurrence as " ~ dbt.type_string() ~ ")") }}
            as wallet_credit_id,
        every_credit.wallet_id,
        wallets.customer_id,
        wallets.currency,
        every_credit.source_kind,
        every_credit.credited_at,
        every_credit.credit_kind,
        every_credit.credits,
        {{ to_precise_money('every_credit.credits * wallets.rate_amount') }} as amount
    from every_credit
    inner join wallets
        on every_credit.wallet_id = wallets.wallet_id
)

select * from final
