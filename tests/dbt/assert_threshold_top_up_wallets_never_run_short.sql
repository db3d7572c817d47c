{{ config(meta={'dagster': {'ref': {'name': 'int_invoice_wallet_credits'}}}) }}
-- A wallet with a threshold top-up pays every invoice issued by the run's as_of in full: the
-- rule is checked at each invoice before it draws on the wallet and leaves the ongoing balance
-- above the threshold (int_wallet_threshold_top_ups). Returns the (wallet, invoice) pairs where
-- it paid less than it was asked.
with payments as (
    select distinct wallet_id, invoice_id, invoice_at, demand_amount, credit_amount
    from {{ ref('int_invoice_wallet_credits') }}
)

select payments.*
from payments
inner join {{ ref('stg_catalog__wallet_top_ups') }} as rules
    on payments.wallet_id = rules.wallet_id
    and rules.threshold_credits is not null
where payments.invoice_at <= {{ as_of_timestamp() }}
    and payments.credit_amount <> payments.demand_amount
