-- One row per coupon applied to a customer.
with source as (
    select * from {{ source('catalog', 'applied_coupons') }}
),

final as (
    select
        source.applied_coupon_id,
        source.external_customer_id as customer_id,
        source.coupon_code,
        source.applied_at,
        source.file_row
    from source
)

select * from final
