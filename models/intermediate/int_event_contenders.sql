-- One row per event that shares its key hash with another event (macros/event_keys.sql): the
-- events loaded since the key index's newest load, and the indexed ones they may repeat. A
-- hash only nominates; int_event_duplicates compares the keys themselves.
-- A daily run groups the new events' hashes and looks them up in the index, so its cost
-- follows the new events (plus one scan of the index's hashes); a full refresh, or a first
-- build, finds the repeated hashes among all of them (repeated_key_hashes).
{%- set index = event_key_index() %}
{%- set indexed_through = event_key_index_through() %}
{%- set new_only = index is not none and not flags.FULL_REFRESH
    and adapter.get_relation(database=this.database, schema=this.schema, identifier='int_event_duplicates') is not none %}

with new_events as (
    select
        events.batch_id,
        events.source_row,
        events.loaded_at,
        {{ event_key_hash('events.external_subscription_id', 'events.external_customer_id', 'events.transaction_id') }}
            as key_hash
    from {{ ref('stg_raw__events') }} as events
    {%- if indexed_through %}
    where events.loaded_at > cast('{{ indexed_through }}' as timestamp)
    {%- endif %}
),

{%- if new_only %}
-- A daily run: one pass over the index's hashes finds the indexed events a new one repeats.
indexed_repeated as (
    select indexed.batch_id, indexed.source_row, indexed.loaded_at, indexed.key_hash
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
    select new_events.batch_id, new_events.source_row, new_events.loaded_at, new_events.key_hash
    from new_events
    inner join shared_hashes
        on new_events.key_hash = shared_hashes.key_hash

    union all

    select * from indexed_repeated
)
{%- else %}
{#- The index is read where it is used, not as a CTE: DuckDB materialises a CTE read twice, and
    copying 100M index rows to scan them twice cost several times the lookups themselves. #}
{%- set every_key %}(
    select new_events.key_hash from new_events
    {%- if index is not none %}
    union all
    select indexed.key_hash from {{ index }} as indexed
    {%- endif %}
){%- endset %}
shared_hashes as (
    {{ repeated_key_hashes(every_key) }}
),

final as (
    select new_events.batch_id, new_events.source_row, new_events.loaded_at, new_events.key_hash
    from new_events
    inner join shared_hashes
        on new_events.key_hash = shared_hashes.key_hash
    {%- if index is not none %}

    union all

    select indexed.batch_id, indexed.source_row, indexed.loaded_at, indexed.key_hash
    from {{ index }} as indexed
    inner join shared_hashes
        on indexed.key_hash = shared_hashes.key_hash
    {%- endif %}
)
{%- endif %}

select * from final
