-- One row per fee kind or billable metric a limited wallet may pay for.
with source as (
    select * from {{ source('catalog', 'wallet_limits') }}
),

final as (
    select
        source.wallet_code as wallet_id,
        source.limited_to,
        source.target_code
    from source
)

select * from final
