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
-- Almost no event is a duplicate, so one hash group-by finds the contested keys and only
-- their events are ranked (a sort) and content-hashed; every other event wins as it is.

{#- The newest load already here, as a literal: a constant filter lets the warehouse skip
    whole loads (an events lake's earlier registrations, orchestration/lake.py) when it plans
    the query; a subquery would be known only while the files are read. -#}
{%- set newest_loaded_at = none -%}
{%- if is_incremental() and execute -%}
    {%- set newest_loaded_at = run_query("select max(loaded_at) from " ~ this).columns[0].values()[0] -%}
{%- endif %}

with new_events as (
    select * from {{ ref('stg_raw__events') }}
    {% if is_incremental() %}
    where loaded_at > cast('{{ newest_loaded_at or "1900-01-01 00:00:00" }}' as timestamp)
    {% endif %}
),

{% if is_incremental() %}
earlier_winners as (
    select
        kept.event_id,
        kept.event_owner_key,
        kept.transaction_id,
        kept.metric_code,
        kept.event_at,
        kept.properties,
        kept.loaded_at,
        kept.batch_id,
        cast(0 as bigint) as source_row,
        true as is_earlier
    from {{ this }} as kept
    inner join (select distinct event_owner_key, transaction_id from new_events) as touched
        on kept.event_owner_key = touched.event_owner_key
        and kept.transaction_id = touched.transaction_id
    where not kept.is_duplicate
),
{% endif %}

contested_keys as (
    select new_events.event_owner_key, new_events.transaction_id
    from new_events
    group by 1, 2
    having count(*) > 1
    {% if is_incremental() %}
    union
    select earlier_winners.event_owner_key, earlier_winners.transaction_id
    from earlier_winners
    {% endif %}
),

contenders as (
    select
        new_events.event_id,
        new_events.event_owner_key,
        new_events.transaction_id,
        new_events.metric_code,
        new_events.event_at,
        new_events.properties,
        new_events.loaded_at,
        new_events.batch_id,
        new_events.source_row,
        false as is_earlier
    from new_events
    inner join contested_keys
        on new_events.event_owner_key = contested_keys.event_owner_key
        and new_events.transaction_id = contested_keys.transaction_id
    {% if is_incremental() %}
    union all
    select * from earlier_winners
    {% endif %}
),

ranked as (
    select
        contenders.*,
        {{ dbt.hash("contenders.metric_code || '|' || cast(contenders.event_at as " ~ dbt.type_string()
            ~ ") || '|' || contenders.properties") }} as payload_hash,
        row_number() over (
            partition by contenders.event_owner_key, contenders.transaction_id
            order by contenders.loaded_at, contenders.batch_id, contenders.source_row
        ) as arrival_rank
    from contenders
),

winners as (
    select
        ranked.event_owner_key,
        ranked.transaction_id,
        ranked.event_id as winner_event_id,
        ranked.payload_hash as winner_payload_hash
    from ranked
    where ranked.arrival_rank = 1
),

contested_verdicts as (
    select
        ranked.event_id,
        (ranked.arrival_rank > 1) as is_duplicate,
        winners.winner_event_id,
        (ranked.payload_hash <> winners.winner_payload_hash) as is_payload_conflict
    from ranked
    inner join winners
        on ranked.event_owner_key = winners.event_owner_key
        and ranked.transaction_id = winners.transaction_id
    where not ranked.is_earlier
),

final as (
    select
        new_events.event_id,
        new_events.transaction_id,
        new_events.external_subscription_id,
        new_events.external_customer_id,
        new_events.event_owner_key,
        new_events.metric_code,
        new_events.event_at,
        new_events.properties,
        new_events.loaded_at,
        new_events.batch_id,
        coalesce(contested_verdicts.is_duplicate, false) as is_duplicate,
        coalesce(contested_verdicts.winner_event_id, new_events.event_id) as winner_event_id,
        coalesce(contested_verdicts.is_payload_conflict, false) as is_payload_conflict
    from new_events
    left join contested_verdicts
        on new_events.event_id = contested_verdicts.event_id
)

select * from final
