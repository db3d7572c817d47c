-- One row per subscription phase: a subscription's first plan, then one row per plan change
-- (the same external_subscription_id, a later started_at: when the change was requested).
with source as (
    select * from {{ source('catalog', 'subscriptions') }}
),

final as (
    select
        coalesce(source.subscription_id, source.external_subscription_id) as subscription_id,
        source.external_subscription_id,
        coalesce(source.phase, 1) as phase,
        source.external_customer_id as customer_id,
        source.plan_code,
        source.started_at,
        source.ended_at,
        coalesce(source.billing_time, 'calendar') as billing_time
    from source
)

select * from final
