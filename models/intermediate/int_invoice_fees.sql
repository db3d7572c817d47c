-- One row per fee on an invoice: a subscription's fees (int_fees), one-off add-ons
-- (int_add_on_fees) and the lines of progressive billing invoices (int_progressive_billing_fees),
-- the first step of an invoice's computation (docs/invoice-amounts.md).
--
-- Step two starts here: a period's usage line deducts what progressive invoices of its period
-- already billed for it, at most its own amount (usage billed early that then went down, with a
-- volume price or a latest value, is returned by a credit note, fct_credit_notes).
-- `billable_amount` is what is left: what coupons, taxes and credits start from.
{%- set fee_columns = ['invoice_line_id', 'invoice_id', 'fee_kind', 'billing_period_id', 'subscription_id',
    'customer_id', 'plan_code', 'base_plan_code', 'charge_id', 'metric_code', 'charge_model', 'description',
    'group_key', 'currency', 'minor_unit', 'service_start_at', 'service_end_at', 'service_start_date',
    'service_last_date', 'invoice_at', 'units', 'event_count', 'proration_factor', 'precise_amount', 'amount'] %}
with subscription_fees as (
    select * from {{ ref('int_fees') }}
),

add_on_fees as (
    select * from {{ ref('int_add_on_fees') }}
),

progressive_fees as (
    select * from {{ ref('int_progressive_billing_fees') }}
),

progressively_billed as (
    select
        progressive_fees.period_invoice_line_id,
        sum(progressive_fees.amount) as billed_amount
    from progressive_fees
    group by 1
),

every_fee as (
    {%- for relation in ['subscription_fees', 'add_on_fees', 'progressive_fees'] %}
    select {% for column in fee_columns %}{{ relation }}.{{ column }}{% if not loop.last %}, {% endif %}{% endfor %}
    from {{ relation }}
    {%- if not loop.last %}
    union all
    {%- endif %}
    {%- endfor %}
),

deductions as (
    select
        every_fee.*,
        cast(coalesce(progressively_billed.billed_amount, 0) as {{ rounded_money_type() }}) as progressive_billed_amount,
        cast(
            case
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
        deductions.*,
        cast(deductions.amount - deductions.progressive_billing_credit_amount as {{ rounded_money_type() }})
            as billable_amount
    from deductions
)

select * from final
