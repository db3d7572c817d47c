-- One row per credit addition to a wallet up to the run's as_of: transactions and interval
-- top-ups (int_wallet_scheduled_credits), and threshold top-ups (int_wallet_threshold_top_ups).
-- amount = credits x the wallet's rate, a whole number of minor units.
with scheduled_credits as (
    select * from {{ ref('int_wallet_scheduled_credits') }}
),

threshold_top_ups as (
    select * from {{ ref('int_wallet_threshold_top_ups') }}
),

wallets as (
    select * from {{ ref('stg_catalog__wallets') }}
),

final as (
    select
        scheduled_credits.wallet_credit_id,
        scheduled_credits.wallet_id,
        scheduled_credits.customer_id,
        scheduled_credits.currency,
        scheduled_credits.source_kind,
        scheduled_credits.credited_at,
        scheduled_credits.credit_kind,
        scheduled_credits.credits,
        scheduled_credits.amount
    from scheduled_credits
    union all
    select
        -- top_ups_to_date numbers the rule's top-ups: one id per check that added some.
        {{ dbt.hash("threshold_top_ups.wallet_id || '|threshold_top_up|' || cast(threshold_top_ups.position as "
                    ~ dbt.type_string() ~ ") || '|' || cast(threshold_top_ups.top_ups_to_date as " ~ dbt.type_string() ~ ")") }}
            as wallet_credit_id,
        threshold_top_ups.wallet_id,
        threshold_top_ups.customer_id,
        wallets.currency,
        'threshold_top_up' as source_kind,
        threshold_top_ups.credited_at,
        threshold_top_ups.credit_kind,
        threshold_top_ups.credits,
        threshold_top_ups.amount
    from threshold_top_ups
    inner join wallets
        on threshold_top_ups.wallet_id = wallets.wallet_id
)

select * from final
