-- One row per subscription.
with source as (
    select * from {{ source('catalog', 'subscriptions') }}
),

final as (
    select
        source.external_subscription_id as subscription_id,
        source.external_customer_id as customer_id,
        source.plan_code,
        source.started_at,
        source.ended_at,
        coalesce(source.billing_time, 'calendar') as billing_time
    from source
)

select * from final
