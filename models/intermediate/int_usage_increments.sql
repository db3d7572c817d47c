{{
    config(
        materialized='incremental',
        incremental_strategy='append',
    )
}}
-- One row per invoice line (or reason an event is not billed), local day of the events, load
-- and metering run: how many events the run metered there and the sum of their units. The
-- bulk of metering: every event is read once, in the run after it is loaded, and only counted
-- and summed, by the hour before it is matched to the calendar (match_event_hours); what is
-- aggregated or priced event by event (max, latest, unique counts,
-- time-weighted sums, percentage and in-advance charges) is in int_events_itemised.
-- Append-only deltas that the models downstream add up:
--   - each run meters the loads newer than the newest here, duplicates included (no per-event
--     lookup of the verdicts), then takes the duplicates of those loads back (event_count -1);
--   - events after the run's as_of are counted as pending (after_cutoff) in their load; when a
--     later as_of passes them (int_events_itemised releases them), the run that sees it moves
--     them: -1 there, +1 on their line.
-- A full refresh meters every load again at once; the sums are the same.
{%- set catalog = metering_catalog() %}
{%- set lookback_days = calendar_lookback_days() %}
{%- set watermarks = metering_watermarks() if is_incremental() else {'loaded_through': '', 'metered_through': ''} %}
{%- set event_columns = 'event_id, transaction_id, external_subscription_id, external_customer_id, metric_code, '
                        ~ 'event_at, loaded_at, properties, batch_id, source_file, source_row' %}

with new_events as (
    select {{ event_columns }}
    from {{ ref('stg_raw__events') }}
    {%- if watermarks['loaded_through'] %}
    where loaded_at > cast('{{ watermarks['loaded_through'] }}' as timestamp)
    {%- endif %}
),

new_duplicates as (
    select {{ event_columns }}
    from {{ ref('int_event_duplicates') }}
    {%- if watermarks['loaded_through'] %}
    where loaded_at > cast('{{ watermarks['loaded_through'] }}' as timestamp)
    {%- endif %}
),

released as (
    select {{ event_columns }}
    from {{ ref('int_events_itemised') }}
    where {% if is_incremental() %}released_at is not null
        {%- if watermarks['metered_through'] %}
        and released_at > cast('{{ watermarks['metered_through'] }}' as timestamp)
        {%- endif %}
    {%- else %}1 = 0{% endif %}
),

metered_new as (
    {{ match_event_hours('new_events', catalog, lookback_days) }}
),

metered_duplicates as (
    {{ match_event_hours('new_duplicates', catalog, lookback_days) }}
),

metered_released as (
    {{ match_event_hours('released', catalog, lookback_days) }}
),

signed as (
    select 1 as sign, metered_new.* from metered_new
    union all
    select -1 as sign, metered_duplicates.* from metered_duplicates
    union all
    select 1 as sign, metered_released.* from metered_released
),

-- Excluded events are counted by reason (and metric and load); billed ones by line and day.
grouped as (
    select
        signed.metric_code,
        signed.loaded_at,
        signed.sign * signed.event_count as event_count,
        signed.sign * signed.units as units,
        signed.exclusion_reason,
        case when signed.exclusion_reason = 'unmatched' then signed.owner_kind end as owner_kind,
        case when signed.exclusion_reason = 'unmatched' then signed.owner_id end as owner_id,
        case when signed.exclusion_reason is null then signed.billing_period_id end as billing_period_id,
        case when signed.exclusion_reason is null then signed.subscription_id end as subscription_id,
        case when signed.exclusion_reason is null then signed.customer_id end as customer_id,
        case when signed.exclusion_reason is null then signed.usage_date end as usage_date,
        case when signed.exclusion_reason is null then signed.charge_id end as charge_id,
        case when signed.exclusion_reason is null then signed.is_pay_in_advance end as is_pay_in_advance,
        {%- for key in catalog['filter_keys'] %}
        case when signed.exclusion_reason is null then signed.filter_value_{{ loop.index }} end as filter_value_{{ loop.index }},
        {%- endfor %}
        {%- for key in catalog['group_keys'] %}
        case when signed.exclusion_reason is null then signed.group_value_{{ loop.index }} end as group_value_{{ loop.index }},
        {%- endfor %}
        1 as present
    from signed

    union all

    -- Released events leave their load's pending count.
    select
        released.metric_code, released.loaded_at, -1 as event_count,
        cast(null as {{ quantity_type() }}) as units,
        'after_cutoff' as exclusion_reason,
        cast(null as {{ dbt.type_string() }}), cast(null as {{ dbt.type_string() }}),
        cast(null as {{ dbt.type_string() }}), cast(null as {{ dbt.type_string() }}),
        cast(null as {{ dbt.type_string() }}), cast(null as date), cast(null as {{ dbt.type_string() }}),
        cast(null as boolean),
        {%- for key in catalog['filter_keys'] %}cast(null as {{ dbt.type_string() }}), {% endfor %}
        {%- for key in catalog['group_keys'] %}cast(null as {{ dbt.type_string() }}), {% endfor %}
        1 as present
    from released
),

aggregated as (
    select
        grouped.metric_code,
        grouped.loaded_at,
        grouped.exclusion_reason,
        grouped.owner_kind,
        grouped.owner_id,
        grouped.billing_period_id,
        grouped.subscription_id,
        grouped.customer_id,
        grouped.usage_date,
        grouped.charge_id,
        grouped.is_pay_in_advance,
        {{ metering_value_columns('grouped', catalog) }}
        sum(grouped.event_count) as event_count,
        sum(case when grouped.exclusion_reason is null then grouped.units end) as units
    from grouped
    group by
        grouped.metric_code, grouped.loaded_at, grouped.exclusion_reason, grouped.owner_kind, grouped.owner_id,
        grouped.billing_period_id, grouped.subscription_id, grouped.customer_id, grouped.usage_date,
        {{ metering_value_columns('grouped', catalog) }}
        grouped.charge_id, grouped.is_pay_in_advance
),

prices as (
    {{ resolve_prices('aggregated', catalog) }}
),

final as (
    select
        -- An in-advance charge bills each event on a line of its own (int_events_itemised).
        case when aggregated.exclusion_reason is null and not aggregated.is_pay_in_advance then
            {{ invoice_line_id('aggregated.billing_period_id', 'prices.price_charge_id', 'prices.group_key',
                               'false', "''") }}
        end as invoice_line_id,
        aggregated.billing_period_id,
        prices.price_charge_id as charge_id,
        prices.group_key,
        aggregated.subscription_id,
        aggregated.customer_id,
        aggregated.metric_code,
        aggregated.usage_date,
        aggregated.loaded_at,
        coalesce(aggregated.is_pay_in_advance, false) as is_pay_in_advance,
        case when aggregated.exclusion_reason = 'unmatched'
            then {{ classify_unmatched('aggregated.owner_kind', 'aggregated.owner_id') }}
            else aggregated.exclusion_reason
        end as exclusion_reason,
        cast(aggregated.event_count as bigint) as event_count,
        cast(aggregated.units as {{ quantity_type() }}) as units,
        cast('{{ run_started_at.strftime("%Y-%m-%d %H:%M:%S.%f") }}' as timestamp) as metered_at
    from aggregated
    {{ join_resolved_prices('aggregated', catalog) }}
)

select * from final
