-- One row per coupon discount on an invoice.
with coupons as (
    select * from {{ ref('int_invoice_coupons') }}
),

final as (
    select
        {{ dbt.hash("coupons.invoice_id || '|' || coupons.applied_coupon_id") }} as invoice_discount_id,
        coupons.invoice_id,
        coupons.applied_coupon_id,
        coupons.coupon_code,
        coupons.coupon_name,
        coupons.coupon_type,
        coupons.use_number,
        coupons.requested_amount,
        coupons.discount_amount
    from coupons
)

select * from final
