-- One row per finalised invoice (the ledger, orchestration/ledger.py), with its status:
-- `voided` once ledger.invoice_voids names it, `finalized` otherwise. Nothing here is computed
-- again: these are the amounts the invoice was issued with.
with invoices as (
    select * from {{ source('ledger', 'invoices') }}
),

voids as (
    select * from {{ source('ledger', 'invoice_voids') }}
),

final as (
    select
        invoices.*,
        case when voids.invoice_id is null then 'finalized' else 'voided' end as status,
        voids.voided_at,
        voids.reason as void_reason
    from invoices
    left join voids
        on invoices.invoice_id = voids.invoice_id
)

select * from final
