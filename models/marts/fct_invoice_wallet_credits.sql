-- One row per invoice and wallet whose credits paid part of it (docs/invoice-amounts.md): the
-- amount, the credits it took, and the wallet's balance when the invoice drew on it.
-- A finalised invoice's rows come from the ledger, as they were issued.
{%- set columns = ['invoice_wallet_credit_id', 'invoice_id', 'wallet_id', 'wallet_name', 'wallet_rank', 'balance_before_amount', 'credit_amount', 'credits', 'line_count'] %}
with spending as (
    select * from {{ ref('int_invoice_wallet_credits') }}
),

wallets as (
    select * from {{ ref('stg_catalog__wallets') }}
),

issued_invoices as (
    select * from {{ ref('stg_ledger__invoices') }}
),

issued as (
    select * from {{ source('ledger', 'invoice_wallet_credits') }}
),

computed as (
    select
        {{ dbt.hash("spending.invoice_id || '|' || spending.wallet_id") }} as invoice_wallet_credit_id,
        spending.invoice_id,
        spending.wallet_id,
        wallets.wallet_name,
        spending.wallet_rank,
        spending.balance_before_amount,
        spending.credit_amount,
        spending.credits,
        cast(count(*) as bigint) as line_count
    from spending
    inner join wallets
        on spending.wallet_id = wallets.wallet_id
    group by 1, 2, 3, 4, 5, 6, 7, 8
),

final as (
    {{ issued_or_computed(columns) }}
)

select * from final
