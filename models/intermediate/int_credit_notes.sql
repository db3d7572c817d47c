-- One row per credit note, as it stands: finalised ones (automatic or manual) from the ledger,
-- as they were issued, and automatic ones not finalised yet as computed on this run
-- (docs/invoice-lifecycle.md, "Credit notes").
{%- set columns = ['credit_note_id', 'credit_note_number', 'status', 'origin', 'reason', 'credit_method',
    'customer_id', 'billing_entity_code', 'invoice_id', 'subscription_id', 'billing_period_id', 'plan_code',
    'currency', 'issued_at', 'issuing_date', 'service_period_start', 'service_period_end', 'unused_days',
    'days_in_period', 'description', 'quantity', 'precise_amount', 'amount', 'tax_amount', 'total_amount',
    'corrected_invoice_line_id', 'grace_period_ends_at', 'finalized_at', 'voided_at', 'void_reason'] %}
with computed as (
    select
        computed_notes.*,
        cast(null as {{ dbt.type_string() }}) as credit_note_number,
        cast(null as timestamp) as finalized_at,
        cast(null as timestamp) as voided_at,
        cast(null as {{ dbt.type_string() }}) as void_reason
    from {{ ref('int_credit_notes_computed') }} as computed_notes
),

issued as (
    select * from {{ ref('stg_ledger__credit_notes') }}
),

final as (
    select {% for column in columns %}computed.{{ column }}{% if not loop.last %}, {% endif %}{% endfor %}
    from computed
    left join issued
        on computed.credit_note_id = issued.credit_note_id
    where issued.credit_note_id is null

    union all

    select {% for column in columns %}issued.{{ column }}{% if not loop.last %}, {% endif %}{% endfor %}
    from issued
)

select * from final
