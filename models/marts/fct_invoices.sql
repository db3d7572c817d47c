-- One row per invoice: a customer's fees invoiced at one instant (a period boundary), with
-- the computation order of docs/money.md: fees - discounts + taxes = total.
-- Status: `draft` while the invoice's date is after the run's as_of (usage still accrues),
-- `closed` once it has passed.
with lines as (
    select * from {{ ref('fct_invoice_lines') }}
),

coupons as (
    select * from {{ ref('int_invoice_coupons') }}
),

customers as (
    select * from {{ ref('stg_catalog__customers') }}
),

invoice_fees as (
    select
        lines.invoice_id,
        lines.customer_id,
        lines.currency,
        lines.invoice_at,
        -- The invoice's period is the service that ends at its date (usage, arrears fees);
        -- an invoice with only in-advance fees takes the period they pay for.
        coalesce(
            min(case when lines.service_end_at = lines.invoice_at then lines.service_period_start end),
            min(lines.service_period_start)
        ) as period_start,
        coalesce(
            max(case when lines.service_end_at = lines.invoice_at then lines.service_period_end end),
            max(lines.service_period_end)
        ) as period_end,
        cast(sum(lines.amount) as {{ rounded_money_type() }}) as fees_amount,
        count(*) as line_count,
        cast(sum(lines.event_count) as bigint) as event_count
    from lines
    group by 1, 2, 3, 4
),

invoice_discounts as (
    select
        coupons.invoice_id,
        cast(sum(coupons.discount_amount) as {{ rounded_money_type() }}) as discount_amount
    from coupons
    group by 1
),

final as (
    select
        invoice_fees.invoice_id,
        case when invoice_fees.invoice_at > {{ as_of_timestamp() }} then 'draft' else 'closed' end as status,
        invoice_fees.customer_id,
        customers.customer_name,
        customers.billing_entity_code,
        invoice_fees.currency,
        invoice_fees.invoice_at,
        cast({{ from_utc('invoice_fees.invoice_at', 'customers.billing_timezone') }} as date) as issuing_date,
        invoice_fees.period_start,
        invoice_fees.period_end,
        invoice_fees.fees_amount,
        coalesce(invoice_discounts.discount_amount, cast(0 as {{ rounded_money_type() }})) as discount_amount,
        -- Taxes arrive with the tax engine; the column is part of the contract already.
        cast(0 as {{ rounded_money_type() }}) as tax_amount,
        cast(
            invoice_fees.fees_amount - coalesce(invoice_discounts.discount_amount, 0)
            as {{ rounded_money_type() }}
        ) as total_amount,
        cast(invoice_fees.line_count as bigint) as line_count,
        invoice_fees.event_count,
        {{ as_of_timestamp() }} as computed_as_of
    from invoice_fees
    inner join customers
        on invoice_fees.customer_id = customers.customer_id
    left join invoice_discounts
        on invoice_fees.invoice_id = invoice_discounts.invoice_id
)

select * from final
