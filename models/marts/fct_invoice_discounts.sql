-- One row per coupon discount on an invoice: what the coupon asked for, what the invoice's
-- eligible fees could absorb, and what a fixed coupon applied once carries to the next invoice.
-- A finalised invoice's rows come from the ledger, as they were issued.
{%- set columns = ['invoice_discount_id', 'invoice_id', 'applied_coupon_id', 'coupon_code', 'coupon_name', 'coupon_type', 'coupon_rank', 'use_number', 'eligible_amount', 'requested_amount', 'discount_amount', 'carried_amount', 'line_count'] %}
with coupon_shares as (
    select * from {{ ref('int_invoice_coupons') }}
),

issued_invoices as (
    select * from {{ ref('stg_ledger__invoices') }}
),

issued as (
    select * from {{ source('ledger', 'invoice_discounts') }}
),

computed as (
    select
        {{ dbt.hash("coupon_shares.invoice_id || '|' || coupon_shares.applied_coupon_id") }} as invoice_discount_id,
        coupon_shares.invoice_id,
        coupon_shares.applied_coupon_id,
        coupon_shares.coupon_code,
        coupon_shares.coupon_name,
        coupon_shares.coupon_type,
        coupon_shares.coupon_rank,
        coupon_shares.use_number,
        cast(coupon_shares.eligible_amount as {{ precise_money_type() }}) as eligible_amount,
        coupon_shares.requested_amount,
        coupon_shares.discount_amount,
        coupon_shares.carried_amount,
        cast(count(*) as bigint) as line_count
    from coupon_shares
    group by 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12
),

final as (
    {{ issued_or_computed(columns) }}
)

select * from final
