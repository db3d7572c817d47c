{{ config(meta={'dagster': {'ref': {'name': 'int_invoice_wallet_credits'}}}) }}
-- A wallet with a threshold top-up pays every invoice issued by the run's as_of in full: the
-- rule is checked at each invoice before it draws on the wallet and leaves the ongoing balance
-- above the threshold (int_wallet_threshold_top_ups). Returns the (wallet, invoice) pairs where
-- it paid less, or more, than the invoice asked of it (nothing paid counts as 0).
with demands as (
    select * from {{ ref('int_threshold_wallet_invoice_demands') }}
),

payments as (
    select distinct wallet_id, invoice_id, credit_amount
    from {{ ref('int_invoice_wallet_credits') }}
)

select demands.*, payments.credit_amount
from demands
left join payments
    on demands.wallet_id = payments.wallet_id
    and demands.invoice_id = payments.invoice_id
where demands.invoice_at <= {{ as_of_timestamp() }}
    and coalesce(payments.credit_amount, 0) <> case when demands.demand_amount > 0 then demands.demand_amount else 0 end
