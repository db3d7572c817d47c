{{
    config(
        materialized='incremental',
        incremental_strategy='append',
    )
}}
-- One row per raw event, with its deduplication verdict.
-- A duplicate is a second event with the same transaction_id for the same subscription (or
-- customer); the first loaded wins (ties: batch, then file row). Incremental: each run reads
-- only events loaded after the newest one already here, and compares them with the winners
-- already kept, so the cost follows the new data, not the history.

with new_events as (
    select * from {{ ref('stg_raw__events') }}
    {% if is_incremental() %}
    where loaded_at > (select coalesce(max(loaded_at), cast('1900-01-01' as timestamp)) from {{ this }})
    {% endif %}
),

{% if is_incremental() %}
earlier_winners as (
    select
        kept.event_owner_key,
        kept.transaction_id,
        kept.event_id as winner_event_id,
        kept.payload_hash as winner_payload_hash
    from {{ this }} as kept
    inner join (select distinct event_owner_key, transaction_id from new_events) as touched
        on kept.event_owner_key = touched.event_owner_key
        and kept.transaction_id = touched.transaction_id
    where not kept.is_duplicate
),
{% endif %}

ranked as (
    select
        new_events.*,
        row_number() over (
            partition by new_events.event_owner_key, new_events.transaction_id
            order by new_events.loaded_at, new_events.batch_id, new_events.source_row
        ) as arrival_rank,
        first_value(new_events.event_id) over (
            partition by new_events.event_owner_key, new_events.transaction_id
            order by new_events.loaded_at, new_events.batch_id, new_events.source_row
            rows between unbounded preceding and unbounded following
        ) as first_new_event_id,
        first_value(new_events.payload_hash) over (
            partition by new_events.event_owner_key, new_events.transaction_id
            order by new_events.loaded_at, new_events.batch_id, new_events.source_row
            rows between unbounded preceding and unbounded following
        ) as first_new_payload_hash
    from new_events
),

final as (
    select
        ranked.event_id,
        ranked.transaction_id,
        ranked.external_subscription_id,
        ranked.external_customer_id,
        ranked.event_owner_key,
        ranked.metric_code,
        ranked.event_at,
        ranked.properties,
        ranked.payload_hash,
        ranked.loaded_at,
        ranked.batch_id,
        {% if is_incremental() %}
        (earlier_winners.winner_event_id is not null or ranked.arrival_rank > 1) as is_duplicate,
        coalesce(earlier_winners.winner_event_id, ranked.first_new_event_id) as winner_event_id,
        coalesce(earlier_winners.winner_payload_hash, ranked.first_new_payload_hash) as winner_payload_hash
        {% else %}
        (ranked.arrival_rank > 1) as is_duplicate,
        ranked.first_new_event_id as winner_event_id,
        ranked.first_new_payload_hash as winner_payload_hash
        {% endif %}
    from ranked
    {% if is_incremental() %}
    left join earlier_winners
        on ranked.event_owner_key = earlier_winners.event_owner_key
        and ranked.transaction_id = earlier_winners.transaction_id
    {% endif %}
)

select * from final
