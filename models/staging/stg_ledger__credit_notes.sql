-- One row per finalised credit note (the ledger, orchestration/ledger.py): automatic ones frozen
-- by finalisation and manual ones issued by `meterline credit-note`, with their status:
-- `voided` once ledger.credit_note_voids names it, `finalized` otherwise.
-- A manual credit note's tax is what its items give back at their lines' tax rates, rounded
-- once for the note (macros/money.sql: the one place money is rounded); the ledger keeps the
-- items, so this never changes.
{%- set issued_columns = ['credit_note_id', 'origin', 'reason', 'credit_method', 'customer_id',
    'billing_entity_code', 'invoice_id', 'subscription_id', 'billing_period_id', 'plan_code', 'currency', 'issued_at',
    'issuing_date', 'service_period_start', 'service_period_end', 'unused_days', 'days_in_period', 'description',
    'quantity', 'precise_amount', 'amount', 'corrected_invoice_line_id', 'grace_period_ends_at',
    'credit_note_number', 'credit_note_sequence', 'finalisation_id', 'finalized_at', 'events_cutoff_at'] %}
with credit_notes as (
    select * from {{ source('ledger', 'credit_notes') }}
),

item_taxes as (
    select
        items.credit_note_id,
        sum({{ percent_of('items.amount', 'items.tax_rate') }}) as precise_tax_amount
    from {{ source('ledger', 'credit_note_items') }} as items
    group by 1
),

currencies as (
    select * from {{ ref('currencies') }}
),

voids as (
    select * from {{ source('ledger', 'credit_note_voids') }}
),

taxed as (
    select
        {% for column in issued_columns %}credit_notes.{{ column }},
        {% endfor -%}
        coalesce(
            credit_notes.tax_amount,
            {{ round_money('coalesce(item_taxes.precise_tax_amount, 0)', 'currencies.minor_unit') }}
        ) as tax_amount
    from credit_notes
    inner join currencies
        on credit_notes.currency = currencies.currency_code
    left join item_taxes
        on credit_notes.credit_note_id = item_taxes.credit_note_id
),

final as (
    select
        taxed.*,
        cast(taxed.amount + taxed.tax_amount as {{ rounded_money_type() }}) as total_amount,
        case when voids.credit_note_id is null then 'finalized' else 'voided' end as status,
        voids.voided_at,
        voids.reason as void_reason
    from taxed
    left join voids
        on taxed.credit_note_id = voids.credit_note_id
)

select * from final
