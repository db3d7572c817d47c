-- One row per top-up rule of a wallet: credits added at every interval's start
-- (top_up_interval), or whenever the wallet's ongoing balance is at or under threshold_credits.
with source as (
    select * from {{ source('catalog', 'wallet_top_ups') }}
),

final as (
    select
        source.wallet_code as wallet_id,
        source.position,
        source.top_up_interval,
        {{ to_precise_money('source.threshold_credits') }} as threshold_credits,
        source.credit_kind,
        {{ to_precise_money('source.credits') }} as credits
    from source
)

select * from final
