{{
    config(
        materialized='incremental',
        incremental_strategy='delete+insert',
        unique_key='event_id',
    )
}}
-- One row per deduplicated event: the subscription, billing period and charge it is billed
-- on (its invoice line), or the reason it is excluded. Events that happen after the run's
-- as_of are held back ('after_cutoff') and matched again by a later run.
-- Incremental: new events only, plus the held-back ones. A changed catalog (subscriptions,
-- plans) needs a full refresh; `meterline run` does that by itself when the price-book
-- fingerprint changes.
with events as (
    select * from {{ ref('int_events_deduplicated') }}
),

subscriptions as (
    select * from {{ ref('stg_catalog__subscriptions') }}
),

customers as (
    select * from {{ ref('stg_catalog__customers') }}
),

billing_periods as (
    select * from {{ ref('int_billing_periods') }}
),

charges as (
    select * from {{ ref('stg_catalog__charges') }}
),

candidates as (
    {% if is_incremental() %}
    select events.*
    from events
    where events.loaded_at > (select coalesce(max(loaded_at), cast('1900-01-01' as timestamp)) from {{ this }})
    union all
    select events.*
    from events
    inner join {{ this }} as held_back
        on events.event_id = held_back.event_id
    where held_back.exclusion_reason = 'after_cutoff'
    {% else %}
    select events.* from events
    {% endif %}
),

resolved as (
    select
        candidates.event_id,
        candidates.metric_code,
        candidates.event_at,
        candidates.loaded_at,
        candidates.properties,
        candidates.external_subscription_id,
        candidates.external_customer_id,
        by_id.subscription_id as subscription_by_id,
        known_customers.customer_id as known_customer_id,
        coalesce(by_id.subscription_id, by_customer.subscription_id) as subscription_id
    from candidates
    left join subscriptions as by_id
        on candidates.external_subscription_id = by_id.subscription_id
    left join customers as known_customers
        on candidates.external_customer_id = known_customers.customer_id
    -- An event that names only its customer goes to the subscription active at that instant.
    left join subscriptions as by_customer
        on candidates.external_subscription_id is null
        and candidates.external_customer_id = by_customer.customer_id
        and candidates.event_at >= by_customer.started_at
        and (by_customer.ended_at is null or candidates.event_at < by_customer.ended_at)
),

matched as (
    select
        resolved.*,
        billing_periods.billing_period_id,
        billing_periods.customer_id,
        charges.charge_id,
        charges.aggregation,
        charges.field_name
    from resolved
    left join billing_periods
        on resolved.subscription_id = billing_periods.subscription_id
        and resolved.event_at >= billing_periods.service_start_at
        and resolved.event_at < billing_periods.service_end_at
    left join charges
        on billing_periods.plan_code = charges.plan_code
        and resolved.metric_code = charges.metric_code
),

classified as (
    select
        matched.*,
        case
            when matched.event_at >= {{ as_of_timestamp() }} then 'after_cutoff'
            when matched.external_subscription_id is not null and matched.subscription_by_id is null
                then 'unknown_subscription'
            when matched.external_subscription_id is null and matched.known_customer_id is null
                then 'unknown_customer'
            when matched.subscription_id is null then 'no_active_subscription'
            when matched.billing_period_id is null then 'outside_subscription_period'
            when matched.charge_id is null then 'metric_not_in_plan'
        end as exclusion_reason
    from matched
),

final as (
    select
        classified.event_id,
        classified.event_at,
        classified.loaded_at,
        classified.metric_code,
        classified.subscription_id,
        case when classified.exclusion_reason is null then classified.customer_id end as customer_id,
        case when classified.exclusion_reason is null then classified.billing_period_id end as billing_period_id,
        case when classified.exclusion_reason is null then classified.charge_id end as charge_id,
        case when classified.exclusion_reason is null
            then {{ dbt.hash("classified.billing_period_id || '|' || classified.charge_id") }}
        end as invoice_line_id,
        -- What the event adds: 1 to a count or a unique count, its field's value otherwise.
        case
            when classified.exclusion_reason is not null then null
            when classified.aggregation in ('count', 'unique_count') then cast(1 as {{ quantity_type() }})
            else cast({{ json_property_text('classified.properties', 'classified.field_name') }} as {{ quantity_type() }})
        end as units,
        case when classified.exclusion_reason is null and classified.aggregation = 'unique_count'
            then {{ json_property_text('classified.properties', 'classified.field_name') }}
        end as unique_value,
        case when classified.exclusion_reason is null and classified.aggregation = 'unique_count'
            then coalesce({{ json_property_text('classified.properties', "'operation_type'") }}, 'add')
        end as operation_type,
        classified.exclusion_reason,
        cast({{ dbt.current_timestamp() }} as timestamp) as matched_at
    from classified
)

select * from final
