-- One row per invoice and applied coupon that discounts it.
-- A coupon applies to the customer's invoices with fees above zero, issued on or after it was
-- applied, in invoice order: `once` the first, `recurring` the first N, `forever` all.
-- Several coupons on one invoice apply in the order they were applied, and together never
-- take the invoice below zero.
with fees as (
    select * from {{ ref('int_fees') }}
),

applied_coupons as (
    select * from {{ ref('stg_catalog__applied_coupons') }}
),

coupons as (
    select * from {{ ref('stg_catalog__coupons') }}
),

invoices as (
    select
        fees.invoice_id,
        fees.customer_id,
        fees.currency,
        fees.minor_unit,
        fees.invoice_at,
        sum(fees.amount) as fees_amount
    from fees
    group by 1, 2, 3, 4, 5
),

eligible as (
    select
        invoices.invoice_id,
        invoices.fees_amount,
        invoices.minor_unit,
        applied_coupons.applied_coupon_id,
        applied_coupons.applied_at,
        coupons.coupon_code,
        coupons.coupon_name,
        coupons.coupon_type,
        coupons.percentage_rate,
        coupons.coupon_amount,
        coupons.frequency,
        coupons.frequency_duration,
        row_number() over (
            partition by applied_coupons.applied_coupon_id order by invoices.invoice_at
        ) as use_number
    from applied_coupons
    inner join coupons
        on applied_coupons.coupon_code = coupons.coupon_code
    inner join invoices
        on applied_coupons.customer_id = invoices.customer_id
        and invoices.invoice_at >= applied_coupons.applied_at
        and invoices.fees_amount > 0
        and (coupons.coupon_currency is null or coupons.coupon_currency = invoices.currency)
),

in_force as (
    select
        eligible.*,
        case
            when eligible.coupon_type = 'percentage'
                then {{ round_money('eligible.fees_amount * eligible.percentage_rate * 0.01', 'eligible.minor_unit') }}
            else {{ round_money('eligible.coupon_amount', 'eligible.minor_unit') }}
        end as requested_amount
    from eligible
    where eligible.frequency = 'forever'
        or (eligible.frequency = 'once' and eligible.use_number = 1)
        or (eligible.frequency = 'recurring' and eligible.use_number <= eligible.frequency_duration)
),

stacked as (
    select
        in_force.*,
        coalesce(sum(in_force.requested_amount) over (
            partition by in_force.invoice_id
            order by in_force.applied_at, in_force.applied_coupon_id
            rows between unbounded preceding and 1 preceding
        ), 0) as requested_before
    from in_force
),

final as (
    select
        stacked.invoice_id,
        stacked.applied_coupon_id,
        stacked.coupon_code,
        stacked.coupon_name,
        stacked.coupon_type,
        stacked.use_number,
        stacked.requested_amount,
        cast(
            case
                when stacked.fees_amount - stacked.requested_before <= 0 then 0
                when stacked.requested_amount < stacked.fees_amount - stacked.requested_before
                    then stacked.requested_amount
                else stacked.fees_amount - stacked.requested_before
            end
            as {{ rounded_money_type() }}
        ) as discount_amount
    from stacked
)

select * from final
