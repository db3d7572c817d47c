{{ config(materialized='view') }}
-- One row per distinct event: the accepted raw events but the duplicates (int_event_duplicates),
-- so the first arrival of each (subscription or customer, transaction_id).
with events as (
    select * from {{ ref('stg_raw__events') }}
),

duplicates as (
    select * from {{ ref('int_event_duplicates') }}
),

final as (
    select
        events.event_id,
        events.transaction_id,
        events.external_subscription_id,
        events.external_customer_id,
        events.metric_code,
        events.event_at,
        events.properties,
        events.loaded_at,
        events.batch_id,
        events.source_file,
        events.source_row
    from events
    where not exists (
        select 1
        from duplicates
        where duplicates.batch_id = events.batch_id
            and duplicates.source_row = events.source_row
    )
)

select * from final
