-- One row per wallet: its balance as of the run (settled movements); what the open periods'
-- draft invoices would spend (pending movements); the ongoing usage, their usage (charge lines
-- the wallet may pay, with their taxes); and the ongoing balance, the balance minus the ongoing
-- usage, which a threshold top-up watches (docs/invoice-amounts.md).
with wallets as (
    select * from {{ ref('stg_catalog__wallets') }}
),

movements as (
    select * from {{ ref('fct_wallet_transactions') }}
),

currencies as (
    select * from {{ ref('currencies') }}
),

wallet_limits as (
    select * from {{ ref('stg_catalog__wallet_limits') }}
),

-- The drafts' usage lines the wallet may pay (with their taxes, after coupons), whatever its
-- balance or the other wallets.
ongoing_usage as (
    select
        wallets.wallet_id,
        sum(lines.line_total) as ongoing_usage_amount
    from wallets
    inner join {{ ref('int_invoice_line_amounts_due') }} as lines
        on wallets.customer_id = lines.customer_id
        and lines.invoice_at > {{ as_of_timestamp() }}
        and lines.invoice_at >= wallets.started_at
        and (wallets.expires_at is null or lines.invoice_at < wallets.expires_at)
    where lines.fee_kind = 'charge'
        and lines.line_total > 0
        and {{ wallet_may_pay('wallet_limits', 'wallets.wallet_id', 'lines.fee_kind', 'lines.metric_code') }}
    group by 1
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
            then -movements.amount else 0 end) as pending_spending_amount
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
        cast(coalesce(totals.pending_spending_amount, 0) as {{ rounded_money_type() }}) as pending_spending_amount,
        {{ round_money('coalesce(ongoing_usage.ongoing_usage_amount, 0)', 'currencies.minor_unit') }}
            as ongoing_usage_amount,
        cast(coalesce(totals.balance_amount, 0)
             - {{ round_money('coalesce(ongoing_usage.ongoing_usage_amount, 0)', 'currencies.minor_unit') }}
             as {{ rounded_money_type() }}) as ongoing_balance_amount,
        {{ divide_exactly('coalesce(totals.balance_amount, 0) - ' ~ round_money('coalesce(ongoing_usage.ongoing_usage_amount, 0)', 'currencies.minor_unit'), 'wallets.rate_amount') }}
            as ongoing_balance_credits,
        {{ as_of_timestamp() }} as computed_as_of
    from wallets
    inner join currencies
        on wallets.currency = currencies.currency_code
    left join totals
        on wallets.wallet_id = totals.wallet_id
    left join ongoing_usage
        on wallets.wallet_id = ongoing_usage.wallet_id
)

select * from final
