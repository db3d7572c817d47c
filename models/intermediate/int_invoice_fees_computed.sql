-- One row per fee the models compute from the events and the catalog: a subscription's fees
-- (int_fees), one-off add-ons (int_add_on_fees) and the lines of progressive billing invoices
-- (int_progressive_billing_fees). For an invoice that is finalised this is its recomputation,
-- which int_invoice_corrections compares with what the ledger issued; every later step reads
-- int_invoice_fees, where a finalised invoice's fees are the ledger's.
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

final as (
    {%- for relation in ['subscription_fees', 'add_on_fees', 'progressive_fees'] %}
    select
        {% for column in fee_columns %}{{ relation }}.{{ column }},
        {% endfor -%}
        {{ 'true' if relation == 'progressive_fees' else 'false' }} as is_progressive_billing,
        {{ relation ~ '.period_invoice_line_id' if relation == 'progressive_fees'
           else 'cast(null as ' ~ dbt.type_string() ~ ')' }} as period_invoice_line_id
    from {{ relation }}
    {%- if not loop.last %}
    union all
    {%- endif %}
    {%- endfor %}
)

select * from final
