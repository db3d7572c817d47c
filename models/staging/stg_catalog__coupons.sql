-- One row per coupon that can be applied.
with source as (
    select * from {{ source('catalog', 'coupons') }}
),

final as (
    select
        source.coupon_code,
        source.name as coupon_name,
        source.coupon_type,
        {{ to_precise_money('source.percentage_rate') }} as percentage_rate,
        {{ to_precise_money('source.amount') }} as coupon_amount,
        source.currency as coupon_currency,
        source.frequency,
        source.frequency_duration,
        source.expiration_date
    from source
)

select * from final
