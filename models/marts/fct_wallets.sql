-- One row per wallet: its balance as of the run (settled movements), the ongoing usage (what
-- the open periods' draft invoices would spend) and the ongoing balance, the balance minus that
-- usage (docs/invoice-amounts.md).
with wallets as (
    select * from {{ ref('stg_catalog__wallets') }}
),

movements as (
    select * from {{ ref('fct_wallet_transactions') }}
),

totals as (
    select
        movements.wallet_id,
        sum(case when movements.status = 'settled' and movements.transaction_type in ('granted', 'purchased')
            then movements.amount else 0 end) as credited_amount,
        sum(case when movements.status = 'settled' and movements.transaction_type = 'spent'
            then -movements.amount else 0 end) as spent_amount,
        sum(case when movements.status = 'settled' and movements.transaction_type = 'expired'
            then -movements.amount else 0 end) as expired_amount,
        sum(case when movements.status = 'settled' then movements.amount else 0 end) as balance_amount,
        sum(case when movements.status = 'pending' and movements.transaction_type = 'spent'
            then -movements.amount else 0 end) as ongoing_usage_amount
    from movements
    group by 1
),

final as (
    select
        wallets.wallet_id,
        wallets.customer_id,
        wallets.wallet_name,
        wallets.currency,
        wallets.rate_amount,
        wallets.priority,
        wallets.started_at,
        wallets.expiration_date,
        case
            when wallets.expires_at is not null and wallets.expires_at <= {{ as_of_timestamp() }} then 'expired'
            else 'active'
        end as status,
        cast(coalesce(totals.credited_amount, 0) as {{ rounded_money_type() }}) as credited_amount,
        cast(coalesce(totals.spent_amount, 0) as {{ rounded_money_type() }}) as spent_amount,
        cast(coalesce(totals.expired_amount, 0) as {{ rounded_money_type() }}) as expired_amount,
        cast(coalesce(totals.balance_amount, 0) as {{ rounded_money_type() }}) as balance_amount,
        {{ divide_exactly('coalesce(totals.balance_amount, 0)', 'wallets.rate_amount') }} as balance_credits,
        cast(coalesce(totals.ongoing_usage_amount, 0) as {{ rounded_money_type() }}) as ongoing_usage_amount,
        cast(coalesce(totals.balance_amount, 0) - coalesce(totals.ongoing_usage_amount, 0)
             as {{ rounded_money_type() }}) as ongoing_balance_amount,
        {{ divide_exactly('coalesce(totals.balance_amount, 0) - coalesce(totals.ongoing_usage_amount, 0)', 'wallets.rate_amount') }}
            as ongoing_balance_credits,
        {{ as_of_timestamp() }} as computed_as_of
    from wallets
    left join totals
        on wallets.wallet_id = totals.wallet_id
)

select * from final
