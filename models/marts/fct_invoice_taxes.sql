-- One row per invoice and tax rate: the invoice's tax breakdown (docs/invoice-amounts.md), each
-- rate's tax rounded once (int_invoice_taxes); an invoice's tax is the sum of its rows.
with invoice_taxes as (
    select * from {{ ref('int_invoice_taxes') }}
),

final as (
    select
        {{ dbt.hash("invoice_taxes.invoice_id || '|' || invoice_taxes.tax_code") }} as invoice_tax_id,
        invoice_taxes.*
    from invoice_taxes
)

select * from final
