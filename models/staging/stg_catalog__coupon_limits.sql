-- One row per plan or billable metric a limited coupon is restricted to (docs/invoice-amounts.md).
with source as (
    select * from {{ source('catalog', 'coupon_limits') }}
),

final as (
    select
        source.coupon_code,
        source.limited_to,
        source.target_code
    from source
)

select * from final
