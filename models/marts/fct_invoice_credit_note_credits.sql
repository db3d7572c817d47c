-- One row per invoice and credit note whose credit paid part of it (docs/invoice-amounts.md,
-- step 4: credit notes pay after tax, before prepaid credits; oldest credit note first). A
-- finalised invoice's rows come from the ledger, as they were issued.
with credits as (
    select * from {{ ref('int_invoice_credit_note_credits') }}
),

credit_notes as (
    select * from {{ ref('int_credit_notes') }}
),

final as (
    select
        {{ dbt.hash("credits.invoice_id || '|' || credits.credit_note_id") }} as invoice_credit_note_credit_id,
        credits.invoice_id,
        credits.credit_note_id,
        credit_notes.credit_note_number,
        credits.customer_id,
        credits.currency,
        credits.invoice_at,
        credits.credit_amount
    from credits
    left join credit_notes
        on credits.credit_note_id = credit_notes.credit_note_id
)

select * from final
