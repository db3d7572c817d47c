{{ config(tags=['blocking'], meta={'dagster': {'ref': {'name': 'fct_invoices'}}}) }}
-- The invoice identity. A failure means an invoice's header disagrees with its parts:
-- fees = sum of line amounts, progressive billing already invoiced = what the progressive
-- invoices of its periods billed (at most each line), discounts = sum of its coupon discounts, taxes = sum of its
-- taxes per rate, credit-note credits = sum of the credit notes' payments, prepaid credits =
-- sum of the wallets' payments, each subtotal follows from
-- the step before, and no amount is negative.
with invoices as (
    select * from {{ ref('fct_invoices') }}
),

line_sums as (
    select invoice_id, sum(amount) as lines_amount, sum(progressive_billing_credit_amount) as progressive_amount
    from {{ ref('fct_invoice_lines') }}
    group by 1
),

-- Each usage line deducts what the progressive invoices billed of it (as they were issued),
-- never more than itself.
progressive_deductions as (
    select lines.invoice_id
    from {{ ref('fct_invoice_lines') }} as lines
    left join (
        select period_invoice_line_id, sum(amount) as billed_amount
        from {{ ref('fct_invoice_lines') }}
        where is_progressive_billing
        group by 1
    ) as billed
        on lines.invoice_line_id = billed.period_invoice_line_id
    where lines.progressive_billing_credit_amount
        <> case when billed.billed_amount is null or lines.amount <= 0 then 0
            when billed.billed_amount < lines.amount then billed.billed_amount
            else lines.amount end
),

discount_sums as (
    select invoice_id, sum(discount_amount) as discounts_amount
    from {{ ref('fct_invoice_discounts') }}
    group by 1
),

credit_sums as (
    select invoice_id, sum(credit_amount) as credits_amount
    from {{ ref('fct_invoice_wallet_credits') }}
    group by 1
),

credit_note_sums as (
    select invoice_id, sum(credit_amount) as credit_notes_amount
    from {{ ref('fct_invoice_credit_note_credits') }}
    group by 1
),

tax_sums as (
    select invoice_id, sum(tax_amount) as taxes_amount
    from {{ ref('fct_invoice_taxes') }}
    group by 1
)

select invoices.*
from invoices
left join line_sums on invoices.invoice_id = line_sums.invoice_id
left join discount_sums on invoices.invoice_id = discount_sums.invoice_id
left join tax_sums on invoices.invoice_id = tax_sums.invoice_id
left join credit_sums on invoices.invoice_id = credit_sums.invoice_id
left join credit_note_sums on invoices.invoice_id = credit_note_sums.invoice_id
where invoices.fees_amount <> coalesce(line_sums.lines_amount, 0)
    or invoices.discount_amount <> coalesce(discount_sums.discounts_amount, 0)
    or invoices.tax_amount <> coalesce(tax_sums.taxes_amount, 0)
    or invoices.progressive_billing_credit_amount <> coalesce(line_sums.progressive_amount, 0)
    or invoices.invoice_id in (select progressive_deductions.invoice_id from progressive_deductions)
    or invoices.subtotal_excluding_taxes
        <> invoices.fees_amount - invoices.progressive_billing_credit_amount - invoices.discount_amount
    or invoices.subtotal_including_taxes <> invoices.subtotal_excluding_taxes + invoices.tax_amount
    or invoices.prepaid_credit_amount <> coalesce(credit_sums.credits_amount, 0)
    or invoices.credit_note_credit_amount <> coalesce(credit_note_sums.credit_notes_amount, 0)
    or invoices.total_amount
        <> invoices.subtotal_including_taxes - invoices.credit_note_credit_amount - invoices.prepaid_credit_amount
    or invoices.subtotal_excluding_taxes < 0
    or invoices.total_amount < 0
