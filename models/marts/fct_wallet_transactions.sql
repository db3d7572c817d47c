-- One row per movement of a wallet's balance (docs/invoice-amounts.md): credits granted or
-- purchased (by a transaction, an interval top-up or a threshold top-up), credits spent on an
-- invoice, and what expired at the end of the expiration date.
-- `settled` movements happened by the run's as_of and make the balance; `pending` ones are the
-- credits the open periods' draft invoices would spend (fct_wallets.pending_spending_amount).
with wallets as (
    select * from {{ ref('stg_catalog__wallets') }}
),

credits as (
    select * from {{ ref('int_wallet_credits') }}
),

spending as (
    select * from {{ ref('int_invoice_wallet_credits') }}
),

spent_per_invoice as (
    select
        spending.wallet_id,
        spending.invoice_id,
        spending.invoice_at,
        max(spending.credit_amount) as credit_amount,
        max(spending.credits) as credits
    from spending
    group by 1, 2, 3
),

expiring as (
    select
        wallets.wallet_id,
        wallets.expires_at,
        coalesce((select sum(credits.amount) from credits
                  where credits.wallet_id = wallets.wallet_id and credits.credited_at < wallets.expires_at), 0)
        - coalesce((select sum(spent_per_invoice.credit_amount) from spent_per_invoice
                    where spent_per_invoice.wallet_id = wallets.wallet_id
                        and spent_per_invoice.invoice_at < wallets.expires_at), 0) as expired_amount
    from wallets
    where wallets.expires_at is not null
        and wallets.expires_at <= {{ as_of_timestamp() }}
),

movements as (
    select
        credits.wallet_id,
        credits.credit_kind as transaction_type,
        credits.source_kind,
        credits.credited_at as transaction_at,
        1 as order_at_instant,
        cast(null as {{ dbt.type_string() }}) as invoice_id,
        credits.wallet_credit_id as source_id,
        credits.credits,
        credits.amount
    from credits
    union all
    select
        spent_per_invoice.wallet_id,
        'spent' as transaction_type,
        'invoice' as source_kind,
        spent_per_invoice.invoice_at as transaction_at,
        2 as order_at_instant,
        spent_per_invoice.invoice_id,
        spent_per_invoice.invoice_id as source_id,
        -spent_per_invoice.credits as credits,
        -spent_per_invoice.credit_amount as amount
    from spent_per_invoice
    union all
    select
        expiring.wallet_id,
        'expired' as transaction_type,
        'expiry' as source_kind,
        expiring.expires_at as transaction_at,
        3 as order_at_instant,
        cast(null as {{ dbt.type_string() }}) as invoice_id,
        expiring.wallet_id as source_id,
        -{{ divide_exactly('expiring.expired_amount', 'wallets.rate_amount') }} as credits,
        -expiring.expired_amount as amount
    from expiring
    inner join wallets
        on expiring.wallet_id = wallets.wallet_id
    where expiring.expired_amount > 0
),

final as (
    select
        {{ dbt.hash("movements.wallet_id || '|' || movements.transaction_type || '|' || movements.source_id") }}
            as wallet_transaction_id,
        movements.wallet_id,
        wallets.customer_id,
        wallets.currency,
        movements.transaction_type,
        -- What caused it: a transaction, an interval or threshold top-up, an invoice, the expiry.
        movements.source_kind,
        movements.transaction_at,
        case when movements.transaction_at <= {{ as_of_timestamp() }} then 'settled' else 'pending' end as status,
        movements.invoice_id,
        {{ to_precise_money('movements.credits') }} as credits,
        cast(movements.amount as {{ rounded_money_type() }}) as amount,
        -- The balance after the movement, counting settled movements only.
        cast(sum(case when movements.transaction_at <= {{ as_of_timestamp() }} then movements.amount else 0 end) over (
            partition by movements.wallet_id
            order by movements.transaction_at, movements.order_at_instant, movements.source_id
            rows between unbounded preceding and current row
        ) as {{ rounded_money_type() }}) as balance_after_amount
    from movements
    inner join wallets
        on movements.wallet_id = wallets.wallet_id
)

select * from final
