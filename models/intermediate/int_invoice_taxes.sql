-- One row per invoice and tax rate (docs/invoice-amounts.md): the sum of the lines' exact taxes
-- at that rate, rounded once here, half-up to the currency's minor unit. An invoice's tax is
-- the sum of its rows.
with line_taxes as (
    select * from {{ ref('int_invoice_line_taxes') }}
),

invoices as (
    select distinct invoice_id, currency, minor_unit from {{ ref('int_invoice_fees') }}
),

per_rate as (
    select
        line_taxes.invoice_id,
        line_taxes.tax_code,
        line_taxes.tax_name,
        line_taxes.tax_rate,
        sum(line_taxes.taxable_amount) as taxable_amount,
        sum(line_taxes.tax_amount) as exact_tax_amount,
        count(*) as line_count
    from line_taxes
    group by 1, 2, 3, 4
),

final as (
    select
        per_rate.invoice_id,
        per_rate.tax_code,
        per_rate.tax_name,
        per_rate.tax_rate,
        invoices.currency,
        {{ round_money('per_rate.taxable_amount', 'invoices.minor_unit') }} as taxable_amount,
        {{ to_precise_money('per_rate.exact_tax_amount') }} as precise_tax_amount,
        {{ round_money('per_rate.exact_tax_amount', 'invoices.minor_unit') }} as tax_amount,
        cast(per_rate.line_count as bigint) as line_count
    from per_rate
    inner join invoices
        on per_rate.invoice_id = invoices.invoice_id
)

select * from final
