-- One row per invoice and tax rate: the invoice's tax breakdown (docs/invoice-amounts.md), each
-- rate's tax rounded once (int_invoice_taxes); an invoice's tax is the sum of its rows.
-- A finalised invoice's rows come from the ledger, as they were issued.
{%- set columns = ['invoice_tax_id', 'invoice_id', 'tax_code', 'tax_name', 'tax_rate', 'currency', 'taxable_amount', 'precise_tax_amount', 'tax_amount', 'line_count'] %}
with invoice_taxes as (
    select * from {{ ref('int_invoice_taxes') }}
),

issued_invoices as (
    select * from {{ ref('stg_ledger__invoices') }}
),

issued as (
    select * from {{ source('ledger', 'invoice_taxes') }}
),

computed as (
    select
        {{ dbt.hash("invoice_taxes.invoice_id || '|' || invoice_taxes.tax_code") }} as invoice_tax_id,
        invoice_taxes.*
    from invoice_taxes
),

final as (
    {{ issued_or_computed(columns) }}
)

select * from final
