-- One row per credit note (docs/invoice-lifecycle.md, "Credit notes"): automatic ones (the
-- unused days of a base fee paid in advance, after an upgrade or a termination inside the
-- period it paid for; usage progressive invoices billed beyond a period's final amount; late
-- events that lowered a finalised line) and manual ones (`meterline credit-note`: reason,
-- lines, credit or refund). Status as invoices: `draft` until issued, `closed` while it is
-- still recomputed, then `finalized` (numbered PREFIX-CN-YYYYMM-NNNN, frozen in the ledger) or
-- `voided`.
-- A credited note pays the customer's later invoices (fct_invoice_credit_note_credits):
-- applied_amount is what invoices took of it (voided invoices give theirs back), balance_amount
-- what is left. A refunded note is paid back instead: refunded_amount.
with credit_notes as (
    select * from {{ ref('int_credit_notes') }}
),

applied as (
    select
        credits.credit_note_id,
        sum(credits.credit_amount) as applied_amount
    from {{ ref('int_invoice_credit_note_credits') }} as credits
    left join {{ ref('stg_ledger__invoices') }} as issued_invoices
        on credits.invoice_id = issued_invoices.invoice_id
    where issued_invoices.status is null or issued_invoices.status <> 'voided'
    group by 1
),

final as (
    select
        credit_notes.*,
        cast(case when credit_notes.credit_method = 'credit' then credit_notes.total_amount else 0 end
             as {{ rounded_money_type() }}) as credited_amount,
        cast(case when credit_notes.credit_method = 'refund' then credit_notes.total_amount else 0 end
             as {{ rounded_money_type() }}) as refunded_amount,
        cast(coalesce(applied.applied_amount, 0) as {{ rounded_money_type() }}) as applied_amount,
        cast(case
            when credit_notes.credit_method = 'credit' and credit_notes.status <> 'voided'
                then credit_notes.total_amount - coalesce(applied.applied_amount, 0)
            else 0
        end as {{ rounded_money_type() }}) as balance_amount
    from credit_notes
    left join applied
        on credit_notes.credit_note_id = applied.credit_note_id
)

select * from final
