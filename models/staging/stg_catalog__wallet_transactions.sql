-- One row per credit addition written in wallets.yml: granted (free) or purchased (invoiced).
with source as (
    select * from {{ source('catalog', 'wallet_transactions') }}
),

final as (
    select
        source.wallet_code as wallet_id,
        source.position,
        source.transaction_at,
        source.credit_kind,
        {{ to_precise_money('source.credits') }} as credits
    from source
)

select * from final
