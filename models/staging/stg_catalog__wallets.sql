-- One row per wallet: a customer's prepaid credits (docs/invoice-amounts.md).
with source as (
    select * from {{ source('catalog', 'wallets') }}
),

customers as (
    select * from {{ ref('stg_catalog__customers') }}
),

final as (
    select
        source.wallet_code as wallet_id,
        source.external_customer_id as customer_id,
        source.name as wallet_name,
        customers.currency,
        customers.billing_timezone,
        {{ to_precise_money('source.rate_amount') }} as rate_amount,
        source.priority,
        source.started_at,
        source.expiration_date,
        source.expires_at
    from source
    inner join customers
        on source.external_customer_id = customers.customer_id
)

select * from final
