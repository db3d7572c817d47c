-- One row per invoice line: what the line and its invoice ask of credits (credit notes', then
-- prepaid credits'), which are spent after tax (docs/invoice-amounts.md). line_total is the
-- line's fee net of its coupon share plus its exact taxes, precise (12 decimals, what the
-- wallet's payment is spread over); invoice_total is the invoice's amount due before credits,
-- rounded (fees and discounts are, taxes are rounded per rate).
with fees as (
    select * from {{ ref('int_invoice_fees') }}
),

coupon_shares as (
    select * from {{ ref('int_invoice_coupons') }}
),

line_taxes as (
    select * from {{ ref('int_invoice_line_taxes') }}
),

invoice_taxes as (
    select * from {{ ref('int_invoice_taxes') }}
),

line_discounts as (
    select coupon_shares.invoice_line_id, sum(coupon_shares.line_discount_amount) as discount_amount
    from coupon_shares
    group by 1
),

line_tax_totals as (
    select line_taxes.invoice_line_id, sum(line_taxes.tax_amount) as tax_amount
    from line_taxes
    group by 1
),

invoice_fees as (
    select fees.invoice_id, sum(fees.billable_amount) as billable_amount
    from fees
    group by 1
),

invoice_discounts as (
    select coupon_shares.invoice_id, sum(coupon_shares.line_discount_amount) as discount_amount
    from coupon_shares
    group by 1
),

invoice_tax_totals as (
    select invoice_taxes.invoice_id, sum(invoice_taxes.tax_amount) as tax_amount
    from invoice_taxes
    group by 1
),

invoice_totals as (
    select
        invoice_fees.invoice_id,
        cast(
            invoice_fees.billable_amount - coalesce(invoice_discounts.discount_amount, 0)
            + coalesce(invoice_tax_totals.tax_amount, 0)
            as {{ rounded_money_type() }}
        ) as invoice_total
    from invoice_fees
    left join invoice_discounts
        on invoice_fees.invoice_id = invoice_discounts.invoice_id
    left join invoice_tax_totals
        on invoice_fees.invoice_id = invoice_tax_totals.invoice_id
),

final as (
    select
        fees.invoice_line_id,
        fees.invoice_id,
        fees.customer_id,
        fees.currency,
        fees.invoice_at,
        fees.minor_unit,
        fees.fee_kind,
        fees.metric_code,
        {{ to_precise_money('fees.billable_amount - coalesce(line_discounts.discount_amount, 0)'
                            ' + coalesce(line_tax_totals.tax_amount, 0)') }} as line_total,
        invoice_totals.invoice_total
    from fees
    inner join invoice_totals
        on fees.invoice_id = invoice_totals.invoice_id
    left join line_discounts
        on fees.invoice_line_id = line_discounts.invoice_line_id
    left join line_tax_totals
        on fees.invoice_line_id = line_tax_totals.invoice_line_id
)

select * from final
