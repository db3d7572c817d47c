-- One row per line of a finalised invoice, as it was issued, with its invoice's status.
with lines as (
    select * from {{ source('ledger', 'invoice_lines') }}
),

invoices as (
    select * from {{ ref('stg_ledger__invoices') }}
),

final as (
    select
        lines.*,
        invoices.status
    from lines
    inner join invoices
        on lines.invoice_id = invoices.invoice_id
)

select * from final
