-- One row per invoice and tax rate: the invoice's tax breakdown (docs/taxes.md). Each rate's
-- tax is the sum of its lines' precise taxes, rounded once here, half-up to the currency's
-- minor unit; the invoice's tax is the sum of these rows.
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
        sum(line_taxes.tax_amount) as precise_tax_amount,
        count(*) as line_count
    from line_taxes
    group by 1, 2, 3, 4
),

final as (
    select
        {{ dbt.hash("per_rate.invoice_id || '|' || per_rate.tax_code") }} as invoice_tax_id,
        per_rate.invoice_id,
        per_rate.tax_code,
        per_rate.tax_name,
        per_rate.tax_rate,
        invoices.currency,
        {{ round_money('per_rate.taxable_amount', 'invoices.minor_unit') }} as taxable_amount,
        {{ to_precise_money('per_rate.precise_tax_amount') }} as precise_tax_amount,
        {{ round_money('per_rate.precise_tax_amount', 'invoices.minor_unit') }} as tax_amount,
        cast(per_rate.line_count as bigint) as line_count
    from per_rate
    inner join invoices
        on per_rate.invoice_id = invoices.invoice_id
)

select * from final
