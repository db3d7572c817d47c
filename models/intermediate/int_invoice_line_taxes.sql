-- One row per invoice line and tax it bears (docs/invoice-amounts.md): the tax on the line's fee net of
-- its coupon share, exact. Rounding happens once per invoice and rate, in fct_invoice_taxes.
--
-- A line bears the taxes of its most specific level that names any: its charge (a filter's
-- price follows its charge), else its plan, else its customer, else its billing entity. The
-- taxes of that level stack: each is charged on the same net amount. Tax-exempt customers bear
-- none.
with fees as (
    select * from {{ ref('int_invoice_fees') }}
),

coupon_shares as (
    select * from {{ ref('int_invoice_coupons') }}
),

charges as (
    select * from {{ ref('stg_catalog__charges') }}
),

customers as (
    select * from {{ ref('stg_catalog__customers') }}
),

tax_assignments as (
    select * from {{ ref('stg_catalog__tax_assignments') }}
),

taxes as (
    select * from {{ ref('stg_catalog__taxes') }}
),

line_discounts as (
    select
        coupon_shares.invoice_line_id,
        sum(coupon_shares.line_discount_amount) as discount_amount
    from coupon_shares
    group by 1
),

taxable_lines as (
    select
        fees.invoice_line_id,
        fees.invoice_id,
        fees.customer_id,
        fees.plan_code,
        fees.charge_id,
        customers.billing_entity_code,
        {{ to_precise_money('fees.billable_amount - coalesce(line_discounts.discount_amount, 0)') }} as taxable_amount
    from fees
    inner join customers
        on fees.customer_id = customers.customer_id
    left join line_discounts
        on fees.invoice_line_id = line_discounts.invoice_line_id
    where not customers.is_tax_exempt
),

-- The codes a line could take its taxes from, one per level.
line_levels as (
    select taxable_lines.invoice_line_id, 'charge' as assigned_to, charges.parent_charge_id as target_code
    from taxable_lines
    inner join charges
        on taxable_lines.charge_id = charges.charge_id
    union all
    select taxable_lines.invoice_line_id, 'plan' as assigned_to, taxable_lines.plan_code as target_code
    from taxable_lines
    where taxable_lines.plan_code is not null
    union all
    select taxable_lines.invoice_line_id, 'customer' as assigned_to, taxable_lines.customer_id as target_code
    from taxable_lines
    union all
    select taxable_lines.invoice_line_id, 'billing_entity' as assigned_to, taxable_lines.billing_entity_code as target_code
    from taxable_lines
),

candidate_taxes as (
    select
        line_levels.invoice_line_id,
        tax_assignments.tax_code,
        tax_assignments.assigned_to,
        tax_assignments.specificity,
        max(tax_assignments.specificity) over (partition by line_levels.invoice_line_id) as chosen_specificity
    from line_levels
    inner join tax_assignments
        on line_levels.assigned_to = tax_assignments.assigned_to
        and line_levels.target_code = tax_assignments.target_code
),

final as (
    select
        taxable_lines.invoice_line_id,
        taxable_lines.invoice_id,
        candidate_taxes.tax_code,
        taxes.tax_name,
        taxes.tax_rate,
        candidate_taxes.assigned_to as taxed_by,
        taxable_lines.taxable_amount,
        -- Exact (20 decimals), not precise: the per-rate sum is rounded once and must equal
        -- the rate applied to the invoice's net fees to the last digit.
        cast({{ percent_of('taxable_lines.taxable_amount', 'taxes.tax_rate') }} as decimal(38, 20)) as tax_amount
    from candidate_taxes
    inner join taxable_lines
        on candidate_taxes.invoice_line_id = taxable_lines.invoice_line_id
    inner join taxes
        on candidate_taxes.tax_code = taxes.tax_code
    where candidate_taxes.specificity = candidate_taxes.chosen_specificity
)

select * from final
