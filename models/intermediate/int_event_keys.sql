{{
    config(
        materialized='incremental',
        incremental_strategy='append',
        full_refresh=false,
    )
}}
-- depends_on: {{ ref('int_event_duplicates') }}
-- One row per accepted raw event: the hash of its deduplication key (macros/event_keys.sql),
-- where it came from and when it happened (event_at: the deduplication reads an indexed
-- contender's time here rather than parse every raw event's timestamp to find a few). The
-- index that int_event_contenders looks new events up in. It takes the new loads after the
-- deduplication has judged them, so both read the same loads.
-- is_key_repeated: when the event was indexed, its hash was already shared, with an indexed
-- event or another new one (it was a contender). The hashes with such a row are exactly those
-- that occur more than once, so a full refresh finds its contenders here instead of sorting
-- every hash again.
-- Append-only, and kept by a full refresh: its rows depend on nothing but the raw events, which
-- never change, and hashing every event again would be most of a full rebuild's deduplication.
-- The pipeline drops it when the hash would differ (a new engine version or key definition).
{%- set indexed_through = event_key_index_through() if is_incremental() else '' %}

with events as (
    select * from {{ ref('stg_raw__events') }}
    {%- if indexed_through %}
    where loaded_at > cast('{{ indexed_through }}' as timestamp)
    {%- endif %}
),

keyed as (
    select
        events.batch_id,
        events.source_row,
        events.loaded_at,
        events.event_at,
        {{ event_key_hash('events.external_subscription_id', 'events.external_customer_id', 'events.transaction_id') }}
            as key_hash
    from events
),

contender_hashes as (
    select distinct contenders.key_hash
    from {{ ref('int_event_contenders') }} as contenders
),

final as (
    select
        keyed.batch_id,
        keyed.source_row,
        keyed.loaded_at,
        keyed.event_at,
        keyed.key_hash,
        contender_hashes.key_hash is not null as is_key_repeated
    from keyed
    left join contender_hashes
        on keyed.key_hash = contender_hashes.key_hash
)

select * from final
