-- One row per invoice line: a base fee, a usage fee (or its usage so far, on a progressive
-- billing invoice), a true-up, an add-on or a purchase of credits, with the arithmetic that
-- explains it, what progressive invoices already billed of it, its share of the invoice's
-- coupons, the taxes it bears and its share of the credits (credit notes', then prepaid) that paid it (precise: an
-- invoice rounds its discounts, taxes and credits once, docs/invoice-amounts.md).
-- The lines of a finalised invoice come from the ledger, as they were issued. A correction
-- line (corrected_invoice_line_id set) bills what late events changed on a finalised line.
{%- set columns = ['invoice_line_id', 'invoice_id', 'status', 'fee_kind', 'customer_id', 'subscription_id',
    'plan_code', 'base_plan_code', 'billing_period_id', 'charge_id', 'metric_code', 'charge_model', 'description',
    'group_key', 'currency', 'service_period_start', 'service_period_end', 'service_start_at', 'service_end_at',
    'invoice_at', 'quantity', 'unit_amount', 'proration_factor', 'precise_amount', 'amount',
    'is_progressive_billing', 'progressive_billed_amount', 'progressive_billing_credit_amount',
    'precise_discount_amount', 'taxable_amount', 'tax_rate', 'tax_codes', 'precise_tax_amount', 'precise_credit_amount',
    'event_count', 'corrected_invoice_line_id', 'period_invoice_line_id'] %}
with fees as (
    select * from {{ ref('int_invoice_fees') }}
    union all
    -- Purchases of credits: invoices of their own, not discounted, taxed or paid by credits.
    select
        purchases.*,
        false as is_progressive_billing,
        cast(null as {{ dbt.type_string() }}) as period_invoice_line_id,
        cast(null as {{ dbt.type_string() }}) as corrected_invoice_line_id,
        cast(0 as {{ rounded_money_type() }}) as progressive_billed_amount,
        cast(0 as {{ rounded_money_type() }}) as progressive_billing_credit_amount,
        purchases.amount as billable_amount
    from {{ ref('int_wallet_purchase_fees') }} as purchases
),

wallet_shares as (
    select * from {{ ref('int_invoice_wallet_credits') }}
),

-- Credits that paid the line: its share of the credit notes' payment, then of the wallets'.
line_credits as (
    select
        every_share.invoice_line_id,
        sum(every_share.line_credit_amount) as credit_amount
    from (
        select wallet_shares.invoice_line_id, wallet_shares.line_credit_amount
        from wallet_shares
        union all
        select amounts_due.invoice_line_id, amounts_due.credit_note_credit_amount
        from {{ ref('int_invoice_line_amounts_due') }} as amounts_due
        where amounts_due.credit_note_credit_amount <> 0
    ) as every_share
    group by 1
),

coupon_shares as (
    select * from {{ ref('int_invoice_coupons') }}
),

line_taxes as (
    select * from {{ ref('int_invoice_line_taxes') }}
),

line_discounts as (
    select
        coupon_shares.invoice_line_id,
        sum(coupon_shares.line_discount_amount) as discount_amount
    from coupon_shares
    group by 1
),

line_tax_totals as (
    select
        line_taxes.invoice_line_id,
        sum(line_taxes.tax_rate) as tax_rate,
        -- Which taxes, for the accounting systems' tax types (orchestration/accounting/mappings.py).
        {{ sorted_list('line_taxes.tax_code', "'+'") }} as tax_codes,
        sum(line_taxes.tax_amount) as tax_amount
    from line_taxes
    group by 1
),

issued_invoices as (
    select * from {{ ref('stg_ledger__invoices') }}
),

issued_lines as (
    select * from {{ ref('stg_ledger__invoice_lines') }}
),

computed as (
    select
        fees.invoice_line_id,
        fees.invoice_id,
        case when fees.invoice_at > {{ as_of_timestamp() }} then 'draft' else 'closed' end as status,
        fees.fee_kind,
        fees.customer_id,
        fees.subscription_id,
        fees.plan_code,
        fees.base_plan_code,
        fees.billing_period_id,
        fees.charge_id,
        fees.metric_code,
        fees.charge_model,
        fees.description,
        fees.group_key,
        fees.currency,
        fees.service_start_date as service_period_start,
        fees.service_last_date as service_period_end,
        fees.service_start_at,
        fees.service_end_at,
        fees.invoice_at,
        fees.units as quantity,
        case
            when fees.fee_kind = 'subscription' then fees.precise_amount
            when fees.units > 0 then {{ divide_exactly('fees.precise_amount', 'fees.units') }}
            else cast(0 as {{ precise_money_type() }})
        end as unit_amount,
        fees.proration_factor,
        fees.precise_amount,
        fees.amount,
        fees.is_progressive_billing,
        fees.progressive_billed_amount,
        fees.progressive_billing_credit_amount,
        {{ to_precise_money('coalesce(line_discounts.discount_amount, 0)') }} as precise_discount_amount,
        {{ to_precise_money('fees.billable_amount - coalesce(line_discounts.discount_amount, 0)') }} as taxable_amount,
        {{ to_precise_money('coalesce(line_tax_totals.tax_rate, 0)') }} as tax_rate,
        cast(line_tax_totals.tax_codes as {{ dbt.type_string() }}) as tax_codes,
        {{ to_precise_money('coalesce(line_tax_totals.tax_amount, 0)') }} as precise_tax_amount,
        {{ to_precise_money('coalesce(line_credits.credit_amount, 0)') }} as precise_credit_amount,
        cast(fees.event_count as bigint) as event_count,
        fees.corrected_invoice_line_id,
        fees.period_invoice_line_id
    from fees
    left join line_discounts
        on fees.invoice_line_id = line_discounts.invoice_line_id
    left join line_tax_totals
        on fees.invoice_line_id = line_tax_totals.invoice_line_id
    left join line_credits
        on fees.invoice_line_id = line_credits.invoice_line_id
),

final as (
    {{ issued_or_computed(columns, issued='issued_lines') }}
)

select * from final
