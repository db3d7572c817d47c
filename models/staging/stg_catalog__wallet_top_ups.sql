-- One row per recurring top-up rule of a wallet: credits added at every interval's start.
with source as (
    select * from {{ source('catalog', 'wallet_top_ups') }}
),

final as (
    select
        source.wallet_code as wallet_id,
        source.position,
        source.top_up_interval,
        source.credit_kind,
        {{ to_precise_money('source.credits') }} as credits
    from source
)

select * from final
