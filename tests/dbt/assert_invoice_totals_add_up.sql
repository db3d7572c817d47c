{{ config(meta={'dagster': {'ref': {'name': 'fct_invoices'}}}) }}
-- The invoice identity. A failure means an invoice's header disagrees with its lines:
-- fees = sum of line amounts, discounts = sum of its coupon discounts, and
-- total = fees - discounts + taxes, never below zero.
with invoices as (
    select * from {{ ref('fct_invoices') }}
),

line_sums as (
    select invoice_id, sum(amount) as lines_amount
    from {{ ref('fct_invoice_lines') }}
    group by 1
),

discount_sums as (
    select invoice_id, sum(discount_amount) as discounts_amount
    from {{ ref('fct_invoice_discounts') }}
    group by 1
)

select invoices.*
from invoices
left join line_sums on invoices.invoice_id = line_sums.invoice_id
left join discount_sums on invoices.invoice_id = discount_sums.invoice_id
where invoices.fees_amount <> coalesce(line_sums.lines_amount, 0)
    or invoices.discount_amount <> coalesce(discount_sums.discounts_amount, 0)
    or invoices.total_amount <> invoices.fees_amount - invoices.discount_amount + invoices.tax_amount
    or invoices.total_amount < 0
