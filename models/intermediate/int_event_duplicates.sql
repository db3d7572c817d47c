{{ config(materialized='view') }}
-- One row per duplicate event, with the event that won and whether its payload differs.
with arrivals as (
    select * from {{ ref('int_event_arrivals') }}
),

final as (
    select
        arrivals.event_id,
        arrivals.winner_event_id,
        arrivals.transaction_id,
        arrivals.event_owner_key,
        arrivals.loaded_at,
        -- Same idempotency key, different content: the sender has a bug worth telling them about.
        arrivals.is_payload_conflict
    from arrivals
    where arrivals.is_duplicate
)

select * from final
