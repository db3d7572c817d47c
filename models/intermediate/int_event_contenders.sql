-- One row per event that shares its key hash with another event (macros/event_keys.sql): the
-- events loaded since the key index's newest load, and the indexed ones they may repeat. A
-- hash only nominates; int_event_duplicates compares the keys themselves. Each carries its
-- event_at (the index keeps it) so that the verdicts need not parse every raw timestamp.
-- A daily run groups the new events' hashes and looks them up in the index, so its cost
-- follows the new events (plus one scan of the index's hashes); a full refresh adds the indexed
-- events whose hash the index marked as repeated; a first build, with no index, finds the
-- repeated hashes among all of them (repeated_key_hashes).
{%- set index = event_key_index() %}
{%- set indexed_through = event_key_index_through() %}
{%- set new_only = index is not none and not flags.FULL_REFRESH
    and adapter.get_relation(database=this.database, schema=this.schema, identifier='int_event_duplicates') is not none %}

with new_events as (
    select
        events.batch_id,
        events.source_row,
        events.loaded_at,
        events.event_at,
        {{ event_key_hash('events.external_subscription_id', 'events.external_customer_id', 'events.transaction_id') }}
            as key_hash
    from {{ ref('stg_raw__events') }} as events
    {%- if indexed_through %}
    where events.loaded_at > cast('{{ indexed_through }}' as timestamp)
    {%- endif %}
),

{%- if index is not none %}
-- The new events' hashes looked up in the index: one pass over its hashes finds the indexed
-- events a new one repeats.
indexed_repeated as (
    select indexed.batch_id, indexed.source_row, indexed.loaded_at, indexed.event_at, indexed.key_hash
    from {{ index }} as indexed
    where indexed.key_hash in (select new_events.key_hash from new_events)
),

shared_hashes as (
    select new_events.key_hash
    from new_events
    group by 1
    having count(*) > 1

    union

    select indexed_repeated.key_hash
    from indexed_repeated
),

final as (
    select new_events.batch_id, new_events.source_row, new_events.loaded_at, new_events.event_at, new_events.key_hash
    from new_events
    inner join shared_hashes
        on new_events.key_hash = shared_hashes.key_hash

    union all

    {%- if new_only %}
    select * from indexed_repeated
    {%- else %}
    -- A full refresh judges the indexed events again: those a new one repeats, and those whose
    -- hash the index marked as repeated when it took them (is_key_repeated), which spares the
    -- sort of every hash that finding them again would take.
    select indexed.batch_id, indexed.source_row, indexed.loaded_at, indexed.event_at, indexed.key_hash
    from {{ index }} as indexed
    where indexed.key_hash in (
        select marked.key_hash from {{ index }} as marked where marked.is_key_repeated
        union
        select shared_hashes.key_hash from shared_hashes
    )
    {%- endif %}
)
{%- else %}
-- The first build (no index yet): the hashes that repeat among all the events.
shared_hashes as (
    {{ repeated_key_hashes('(select new_events.key_hash from new_events)') }}
),

final as (
    select new_events.batch_id, new_events.source_row, new_events.loaded_at, new_events.event_at, new_events.key_hash
    from new_events
    inner join shared_hashes
        on new_events.key_hash = shared_hashes.key_hash
)
{%- endif %}

select * from final
