{{ config(materialized='view') }}
-- One row per distinct event: the first arrival of each (subscription or customer, transaction_id).
with arrivals as (
    select * from {{ ref('int_event_arrivals') }}
),

final as (
    select
        arrivals.event_id,
        arrivals.transaction_id,
        arrivals.external_subscription_id,
        arrivals.external_customer_id,
        arrivals.metric_code,
        arrivals.event_at,
        arrivals.properties,
        arrivals.loaded_at
    from arrivals
    where not arrivals.is_duplicate
)

select * from final
