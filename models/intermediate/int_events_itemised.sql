{{
    config(
        materialized=row_replacing_materialization(),
        incremental_strategy=row_replacing_strategy(),
        unique_key='event_id',
    )
}}
-- One row per deduplicated event that is aggregated or priced one at a time, with the line it
-- is billed on (or why not): the events of metrics aggregated by max, latest, unique count or
-- time-weighted sum, and of metrics with a percentage or in-advance charge (per-event pricing).
-- And one row per event held back because it happens after the run's as_of (after_cutoff),
-- whatever its metric: a later run matches it again, and the run whose as_of passes it marks
-- it released (released_at) so int_usage_increments moves it from pending to its line.
-- Everything else is only counted and summed, in bulk (int_usage_increments).
-- Incremental: the loads the bulk metering has not seen yet (the same ones it meters next),
-- and the held-back events, matched again from the fields kept here.
{%- set catalog = metering_catalog() %}
{%- set watermarks = metering_watermarks() if is_incremental() else {'loaded_through': '', 'metered_through': ''} %}
{%- set other_columns = 'external_subscription_id, external_customer_id, metric_code, '
                        ~ 'event_at, loaded_at, properties, batch_id, source_file, source_row' %}
{%- set event_columns = 'event_id, transaction_id, ' ~ other_columns %}
{#- What the raw events are read for: transaction_id only for the events of metrics with an
    in-advance charge, whose line it names (invoice_line_id), null for the others. Nothing else
    here needs it, and it is the widest column a scan of the raw events decodes (every event's,
    though few are kept). A price book change rebuilds this table (pipeline.needs_full_refresh). -#}
{%- set transaction_id = ('case when metric_code in (' ~ sql_text_list(catalog['in_advance']) ~ ') then transaction_id end')
                         if catalog['in_advance'] else 'cast(null as ' ~ dbt.type_string() ~ ')' %}
{%- set read_columns = 'event_id, ' ~ transaction_id ~ ' as transaction_id, ' ~ other_columns %}
{#- The batches that may hold an event after the as_of: their latest event is not earlier
    (or unknown: a batch loaded by an earlier version). Read as constants, so the other
    batches are not read at all. -#}
{%- set late_batches = [] %}
{%- if execute %}
    {%- set late_batches = run_query("select batch_id from " ~ source('raw', 'ingest_batches')
        ~ " where max_event_at is null or max_event_at >= " ~ as_of_timestamp()).columns[0].values() %}
{%- endif %}

with itemised_events as (
    select {{ read_columns }}
    from {{ ref('int_events_deduplicated') }}
    where metric_code in ({{ sql_text_list(catalog['itemised']) if catalog['itemised'] else "''" }})
    {%- if watermarks['loaded_through'] %}
        and loaded_at > cast('{{ watermarks['loaded_through'] }}' as timestamp)
    {%- endif %}
),

late_events as (
    select {{ read_columns }}
    from {{ ref('int_events_deduplicated') }}
    where {% if late_batches %}batch_id in ({{ sql_text_list(late_batches) }}){% else %}1 = 0{% endif %}
        and event_at >= {{ as_of_timestamp() }}
        and metric_code not in ({{ sql_text_list(catalog['itemised']) if catalog['itemised'] else "''" }})
    {%- if watermarks['loaded_through'] %}
        and loaded_at > cast('{{ watermarks['loaded_through'] }}' as timestamp)
    {%- endif %}
),

held_back as (
    {%- if is_incremental() and watermarks['loaded_through'] %}
    select {{ event_columns }}
    from {{ this }}
    where exclusion_reason = 'after_cutoff'
        and loaded_at <= cast('{{ watermarks['loaded_through'] }}' as timestamp)
    {%- else %}
    select {{ event_columns }} from itemised_events where 1 = 0
    {%- endif %}
),

candidates as (
    select itemised_events.*, false as was_held_back from itemised_events
    union all
    select late_events.*, false as was_held_back from late_events
    union all
    select held_back.*, true as was_held_back from held_back
),

matched as (
    {{ match_events('candidates', catalog) }}
),

held_flags as (
    select candidates.event_id, candidates.was_held_back from candidates
),

prices as (
    {{ resolve_prices('matched', catalog) }}
),

final as (
    select
        matched.event_id,
        matched.transaction_id,
        matched.external_subscription_id,
        matched.external_customer_id,
        matched.metric_code,
        matched.event_at,
        matched.loaded_at,
        matched.properties,
        matched.batch_id,
        matched.source_file,
        matched.source_row,
        {{ billed_event_columns() }},
        -- Held back by an earlier run, no longer: the run that released it.
        case when held_flags.was_held_back and matched.exclusion_reason is distinct from 'after_cutoff'
            then cast('{{ run_started_at.strftime("%Y-%m-%d %H:%M:%S.%f") }}' as timestamp)
        end as released_at
    from matched
    inner join held_flags
        on matched.event_id = held_flags.event_id
    {{ join_resolved_prices('matched', catalog) }}
)

select * from final
