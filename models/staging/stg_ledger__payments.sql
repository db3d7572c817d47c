-- One row per payment a customer made on a finalised invoice, as recorded (`meterline payment`).
with payments as (
    select * from {{ source('ledger', 'payments') }}
),

final as (
    select
        payments.payment_id,
        payments.invoice_id,
        payments.customer_id,
        payments.currency,
        cast(payments.amount as {{ rounded_money_type() }}) as amount,
        payments.paid_on,
        payments.reference,
        payments.recorded_at
    from payments
)

select * from final
