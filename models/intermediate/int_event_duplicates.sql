{{
    config(
        materialized=row_replacing_materialization(),
        incremental_strategy=row_replacing_strategy(),
        unique_key='event_id',
    )
}}
-- One row per duplicate event: a second event with the same transaction_id for the same
-- subscription (or customer, when the event names no subscription), with the event that won and
-- whether its payload differs. The first loaded wins (ties: batch, then file row), so a new
-- event can only lose to earlier ones, never make one of them a duplicate: a daily run adds the
-- verdicts of the new events (int_event_contenders) and keeps the others. The contenders' keys
-- are compared exactly, read back from the raw events of their batches only.
-- The duplicate's own fields are kept: int_usage_increments takes back what the bulk count of a
-- load gave it, without reading the load again.
{%- set indexed_through = event_key_index_through() %}
{%- set batches = [] %}
{%- if execute %}
    {%- set batches = run_query('select distinct batch_id from ' ~ ref('int_event_contenders')).columns[0].values() %}
{%- endif %}

with contenders as (
    select * from {{ ref('int_event_contenders') }}
),

-- The event_id and event_at are the contender's (macro event_id; the key index keeps event_at),
-- not read from the raw events: a lake computes them from the file name and the timestamp's
-- text for every event it scans, before the join keeps a few (all 100M on a full rebuild).
contender_events as (
    select
        {{ event_id('contenders.batch_id', 'contenders.source_row') }} as event_id,
        contenders.batch_id,
        events.source_file,
        events.source_row,
        events.loaded_at,
        events.transaction_id,
        events.external_subscription_id,
        events.external_customer_id,
        events.event_owner_key,
        events.metric_code,
        contenders.event_at,
        events.properties
    from {{ ref('stg_raw__events') }} as events
    inner join contenders
        on events.batch_id = contenders.batch_id
        and events.source_row = contenders.source_row
    {#- The batches as constants too: an events lake then reads only their files. #}
    {%- if 0 < batches | length <= 1000 %}
    where events.batch_id in ({% for batch in batches %}'{{ batch }}'{{ ', ' if not loop.last }}{% endfor %})
    {%- elif batches | length == 0 %}
    where 1 = 0
    {%- endif %}
),

ranked as (
    select
        contender_events.*,
        row_number() over (
            partition by contender_events.event_owner_key, contender_events.transaction_id
            order by contender_events.loaded_at, contender_events.batch_id, contender_events.source_row
        ) as arrival_rank
    from contender_events
),

winners as (
    select ranked.*
    from ranked
    where ranked.arrival_rank = 1
),

final as (
    select
        ranked.event_id,
        ranked.batch_id,
        ranked.source_file,
        ranked.source_row,
        ranked.loaded_at,
        ranked.transaction_id,
        ranked.external_subscription_id,
        ranked.external_customer_id,
        ranked.event_owner_key,
        ranked.metric_code,
        ranked.event_at,
        ranked.properties,
        winners.event_id as winner_event_id,
        -- Same idempotency key, different content: the sender has a bug worth telling them about.
        (ranked.metric_code <> winners.metric_code
            or ranked.event_at <> winners.event_at
            or ranked.properties <> winners.properties) as is_payload_conflict
    from ranked
    inner join winners
        on ranked.event_owner_key = winners.event_owner_key
        and ranked.transaction_id = winners.transaction_id
    where ranked.arrival_rank > 1
    {%- if is_incremental() and indexed_through %}
        and ranked.loaded_at > cast('{{ indexed_through }}' as timestamp)
    {%- endif %}
)

select * from final
