-- One row per fee on an invoice, the first step of an invoice's computation
-- (docs/invoice-amounts.md), as every later step (coupons, taxes, credits) must see it:
-- - a finalised invoice's fees as the ledger issued them (docs/invoice-lifecycle.md), so what
--   later invoices inherit from it (coupon uses, wallet balances, progressive deductions) is
--   what it really billed, whatever changed since;
-- - the computed fees (int_invoice_fees_computed) of every other invoice;
-- - corrections of finalised lines for late events (int_invoice_corrections), on the invoice
--   that bills them; a negative correction is a credit note instead.
--
-- Step two starts here: a period's usage line deducts what progressive invoices of its period
-- already billed for it, at most its own amount (usage billed early that then went down, with a
-- volume price or a latest value, is returned by a credit note, fct_credit_notes).
-- `billable_amount` is what is left: what coupons, taxes and credits start from.
{%- set fee_columns = ['invoice_line_id', 'invoice_id', 'fee_kind', 'billing_period_id', 'subscription_id',
    'customer_id', 'plan_code', 'base_plan_code', 'charge_id', 'metric_code', 'charge_model', 'description',
    'group_key', 'currency', 'minor_unit', 'service_start_at', 'service_end_at', 'service_start_date',
    'service_last_date', 'invoice_at', 'units', 'event_count', 'proration_factor', 'precise_amount', 'amount',
    'is_progressive_billing', 'period_invoice_line_id', 'corrected_invoice_line_id'] %}
with computed as (
    select * from {{ ref('int_invoice_fees_computed') }}
),

issued_invoices as (
    select * from {{ ref('stg_ledger__invoices') }}
),

issued_lines as (
    select * from {{ ref('stg_ledger__invoice_lines') }}
    -- Purchases of credits are invoices of their own, outside these steps (fct_invoice_lines).
    where fee_kind <> 'credit_purchase'
),

corrections as (
    select * from {{ ref('int_invoice_corrections') }}
    where correction_kind = 'invoice_line'
),

currencies as (
    select * from {{ ref('currencies') }}
),

issued_fees as (
    select
        issued_lines.invoice_line_id,
        issued_lines.invoice_id,
        issued_lines.fee_kind,
        issued_lines.billing_period_id,
        issued_lines.subscription_id,
        issued_lines.customer_id,
        issued_lines.plan_code,
        issued_lines.base_plan_code,
        issued_lines.charge_id,
        issued_lines.metric_code,
        issued_lines.charge_model,
        issued_lines.description,
        issued_lines.group_key,
        issued_lines.currency,
        currencies.minor_unit,
        issued_lines.service_start_at,
        issued_lines.service_end_at,
        issued_lines.service_period_start as service_start_date,
        issued_lines.service_period_end as service_last_date,
        issued_lines.invoice_at,
        issued_lines.quantity as units,
        issued_lines.event_count,
        issued_lines.proration_factor,
        issued_lines.precise_amount,
        issued_lines.amount,
        issued_lines.is_progressive_billing,
        -- The period line a progressive line counts towards, as issued (a ledger written before
        -- it was kept: the recomputation names it, the ids being deterministic).
        coalesce(issued_lines.period_invoice_line_id, computed.period_invoice_line_id) as period_invoice_line_id,
        issued_lines.corrected_invoice_line_id,
        true as is_issued,
        issued_lines.progressive_billed_amount as issued_progressive_billed_amount,
        issued_lines.progressive_billing_credit_amount as issued_progressive_billing_credit_amount
    from issued_lines
    inner join currencies
        on issued_lines.currency = currencies.currency_code
    left join computed
        on issued_lines.invoice_line_id = computed.invoice_line_id
),

open_fees as (
    select
        {% for column in fee_columns[:-1] %}computed.{{ column }},
        {% endfor -%}
        cast(null as {{ dbt.type_string() }}) as corrected_invoice_line_id,
        false as is_issued,
        cast(null as {{ rounded_money_type() }}) as issued_progressive_billed_amount,
        cast(null as {{ rounded_money_type() }}) as issued_progressive_billing_credit_amount
    from computed
    left join issued_invoices
        on computed.invoice_id = issued_invoices.invoice_id
    where issued_invoices.invoice_id is null
),

correction_fees as (
    select
        corrections.correction_id as invoice_line_id,
        corrections.target_invoice_id as invoice_id,
        corrections.fee_kind,
        corrections.billing_period_id,
        corrections.subscription_id,
        corrections.customer_id,
        corrections.plan_code,
        corrections.base_plan_code,
        corrections.charge_id,
        corrections.metric_code,
        corrections.charge_model,
        corrections.description,
        corrections.group_key,
        corrections.currency,
        corrections.minor_unit,
        corrections.service_start_at,
        corrections.service_end_at,
        corrections.service_start_date,
        corrections.service_last_date,
        corrections.target_invoice_at as invoice_at,
        corrections.units_change as units,
        corrections.late_event_count as event_count,
        cast(1 as {{ precise_money_type() }}) as proration_factor,
        -- The difference of two rounded amounts: already rounded (the one rounding place stays
        -- the recomputed line's, macros/money.sql).
        {{ to_precise_money('corrections.amount_change') }} as precise_amount,
        corrections.amount_change as amount,
        false as is_progressive_billing,
        cast(null as {{ dbt.type_string() }}) as period_invoice_line_id,
        corrections.corrected_invoice_line_id,
        false as is_issued,
        cast(null as {{ rounded_money_type() }}) as issued_progressive_billed_amount,
        cast(null as {{ rounded_money_type() }}) as issued_progressive_billing_credit_amount
    from corrections
    -- The target invoice is never a finalised one (int_invoice_corrections), but a correction
    -- that lands on an invoice of its own might be dated where one was finalised: keep it off.
    left join issued_invoices
        on corrections.target_invoice_id = issued_invoices.invoice_id
    where issued_invoices.invoice_id is null
),

every_fee as (
    select * from issued_fees
    union all
    select * from open_fees
    union all
    select * from correction_fees
),

progressively_billed as (
    select
        every_fee.period_invoice_line_id,
        sum(every_fee.amount) as billed_amount
    from every_fee
    where every_fee.is_progressive_billing
    group by 1
),

deductions as (
    select
        every_fee.*,
        cast(
            case when every_fee.is_issued then every_fee.issued_progressive_billed_amount
                else coalesce(progressively_billed.billed_amount, 0) end
            as {{ rounded_money_type() }}
        ) as progressive_billed_amount,
        cast(
            case
                when every_fee.is_issued then every_fee.issued_progressive_billing_credit_amount
                when progressively_billed.billed_amount is null or every_fee.amount <= 0 then 0
                when progressively_billed.billed_amount < every_fee.amount then progressively_billed.billed_amount
                else every_fee.amount
            end
            as {{ rounded_money_type() }}
        ) as progressive_billing_credit_amount
    from every_fee
    left join progressively_billed
        on every_fee.invoice_line_id = progressively_billed.period_invoice_line_id
),

final as (
    select
        {% for column in fee_columns %}deductions.{{ column }},
        {% endfor -%}
        deductions.progressive_billed_amount,
        deductions.progressive_billing_credit_amount,
        cast(deductions.amount - deductions.progressive_billing_credit_amount as {{ rounded_money_type() }})
            as billable_amount
    from deductions
)

select * from final
