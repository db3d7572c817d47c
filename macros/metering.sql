{#- Metering: matching events to what bills them, shared by the models that meter in bulk
    (int_usage_increments), one event at a time (int_events_itemised) and on demand
    (int_events_matched, the lineage view). One definition, so the three agree event for event.

    The SQL is written with the loaded catalog in hand (run_query when the model runs): which
    properties each metric's events are read for, the filter values that price them, the
    pricing-group keys, and which metrics are aggregated or priced one event at a time. Reading
    a JSON property is most of the cost of metering 100M events, so each event's properties
    are parsed once, for exactly the keys its metric needs, with constant paths. -#}

{#- The catalog as the metering SQL needs it:
    metrics        [{code, aggregation, field}] of every billable metric
    keys           {metric: [property keys its events are read for]}
    filter_keys    [every filter key], filter_values {key: [values some filter accepts]},
                   filter_metrics {key: [metrics with a filter on it]}
    group_keys     [every pricing-group key], group_metrics {key: [metrics grouped by it]}
    itemised       [metrics whose events are aggregated or priced one at a time: max, latest,
                   unique_count and weighted_sum, and those with a percentage or in-advance charge]
    in_advance     [metrics with a charge paid in advance: each event is a line of its own,
                   named by its transaction_id (invoice_line_id)] -#}
{% macro metering_catalog() -%}
    {%- set catalog = {'metrics': [], 'keys': {}, 'filter_keys': [], 'filter_values': {}, 'filter_metrics': {},
                       'group_keys': [], 'group_metrics': {}, 'itemised': [], 'in_advance': []} -%}
    {%- if not execute -%}
        {{ return(catalog) }}
    {%- endif -%}
    {%- set metric_rows = run_query("select metric_code, aggregation, field_name from "
                                    ~ source('catalog', 'billable_metrics') ~ " order by metric_code").rows -%}
    {%- set charge_rows = run_query(
        "select metric_code, max(case when charge_model = 'percentage' or coalesce(is_pay_in_advance, false)"
        ~ " then 1 else 0 end), max(case when coalesce(is_pay_in_advance, false) then 1 else 0 end) from "
        ~ source('catalog', 'charges') ~ " group by 1 order by 1").rows -%}
    {%- set filter_rows = run_query(
        "select distinct charges.metric_code, filter_values.filter_key, filter_values.filter_value from "
        ~ source('catalog', 'charge_filter_values') ~ " as filter_values inner join "
        ~ source('catalog', 'charges') ~ " as charges on filter_values.charge_id = charges.charge_id"
        ~ " order by 2, 3, 1").rows -%}
    {%- set group_rows = run_query(
        "select distinct metric_code, group_key from ("
        ~ " select metric_code, group_key_1 as group_key from " ~ source('catalog', 'charges')
        ~ " union all select metric_code, group_key_2 from " ~ source('catalog', 'charges')
        ~ " union all select metric_code, group_key_3 from " ~ source('catalog', 'charges')
        ~ ") as grouped where group_key is not null order by 2, 1").rows -%}
    {%- set priced_one_by_one = [] -%}
    {%- for row in charge_rows if row[1] == 1 -%}{%- do priced_one_by_one.append(row[0]) -%}{%- endfor -%}
    {%- for row in charge_rows if row[2] == 1 -%}{%- do catalog['in_advance'].append(row[0]) -%}{%- endfor -%}
    {%- for row in metric_rows -%}
        {%- do catalog['metrics'].append({'code': row[0], 'aggregation': row[1], 'field': row[2]}) -%}
        {%- do catalog['keys'].update({row[0]: ([row[2]] if row[2] and row[1] != 'count' else [])}) -%}
        {%- if row[1] in ('max', 'latest', 'unique_count', 'weighted_sum') or row[0] in priced_one_by_one -%}
            {%- do catalog['itemised'].append(row[0]) -%}
        {%- endif -%}
    {%- endfor -%}
    {%- for metric, key, value in filter_rows -%}
        {%- if key not in catalog['filter_keys'] -%}
            {%- do catalog['filter_keys'].append(key) -%}
            {%- do catalog['filter_values'].update({key: []}) -%}
            {%- do catalog['filter_metrics'].update({key: []}) -%}
        {%- endif -%}
        {%- if value not in catalog['filter_values'][key] -%}{%- do catalog['filter_values'][key].append(value) -%}{%- endif -%}
        {%- if metric not in catalog['filter_metrics'][key] -%}{%- do catalog['filter_metrics'][key].append(metric) -%}{%- endif -%}
        {%- if metric in catalog['keys'] and key not in catalog['keys'][metric] -%}
            {%- do catalog['keys'][metric].append(key) -%}
        {%- endif -%}
    {%- endfor -%}
    {%- for metric, key in group_rows -%}
        {%- if key not in catalog['group_keys'] -%}
            {%- do catalog['group_keys'].append(key) -%}
            {%- do catalog['group_metrics'].update({key: []}) -%}
        {%- endif -%}
        {%- do catalog['group_metrics'][key].append(metric) -%}
        {%- if metric in catalog['keys'] and key not in catalog['keys'][metric] -%}
            {%- do catalog['keys'][metric].append(key) -%}
        {%- endif -%}
    {%- endfor -%}
    {%- for metric in catalog['metrics'] if metric['aggregation'] == 'unique_count' -%}
        {%- do catalog['keys'][metric['code']].append('operation_type') -%}
    {%- endfor -%}
    {{ return(catalog) }}
{%- endmacro %}

{% macro sql_text(value) -%}
    '{{ value | replace("'", "''") }}'
{%- endmacro %}

{% macro sql_text_list(values) -%}
    {%- for value in values %}{{ sql_text(value) }}{{ ', ' if not loop.last }}{% endfor -%}
{%- endmacro %}

{#- The properties an event's metric needs, parsed once: a column `_properties` of `relation`'s
    rows that event_property reads. Engines without list-valued JSON extraction read each
    property where it is used (event_property), which is just as correct. -#}
{% macro with_event_properties(relation, catalog) -%}
    {{ return(adapter.dispatch('with_event_properties', 'meterline')(relation, catalog)) }}
{%- endmacro %}

{% macro default__with_event_properties(relation, catalog) -%}
    select {{ relation }}.* from {{ relation }}
{%- endmacro %}

{% macro duckdb__with_event_properties(relation, catalog) -%}
    select
        {{ relation }}.*,
        case {{ relation }}.metric_code
            when '' then cast(null as varchar[])
            {%- for metric, keys in catalog['keys'].items() if keys %}
            when {{ sql_text(metric) }} then json_extract_string({{ relation }}.properties, [
                {%- for key in keys %}{{ sql_text('$."' ~ key ~ '"') }}{{ ', ' if not loop.last }}{% endfor -%}
            ])
            {%- endfor %}
        end as _properties
    from {{ relation }}
{%- endmacro %}

{#- Property `key` of an event of one of `metrics`, as text (null for the other metrics). -#}
{% macro event_property(relation, catalog, key, metrics) -%}
    {{ return(adapter.dispatch('event_property', 'meterline')(relation, catalog, key, metrics)) }}
{%- endmacro %}

{% macro default__event_property(relation, catalog, key, metrics) -%}
    {%- if metrics | length == 0 -%}
        cast(null as {{ dbt.type_string() }})
    {%- else -%}
        case when {{ relation }}.metric_code in ({{ sql_text_list(metrics) }})
            then {{ json_property_text(relation ~ '.properties', sql_text(key)) }} end
    {%- endif -%}
{%- endmacro %}

{% macro duckdb__event_property(relation, catalog, key, metrics) -%}
    {%- set branches = [] -%}
    {%- for metric in metrics if key in catalog['keys'].get(metric, []) -%}
        {%- do branches.append("when " ~ sql_text(metric) ~ " then " ~ relation ~ "._properties["
                               ~ (catalog['keys'][metric].index(key) + 1) ~ "]") -%}
    {%- endfor -%}
    {%- if branches -%}
        case {{ relation }}.metric_code {{ branches | join(' ') }} end
    {%- else -%}
        cast(null as varchar)
    {%- endif -%}
{%- endmacro %}

{#- The per-event columns every metering model derives, over `relation` (a CTE of events with
    the columns of int_events_deduplicated), before any join:
      owner_kind, owner_id   who the event names: its subscription, else its customer
      units          what the event adds: 1 for count and unique_count, the field otherwise
      unique_value, operation_type   for unique counts
      filter_value_N the event's value of the N-th filter key of the catalog when some filter
                     accepts it (else null): the price is resolved from them (resolve_prices)
      group_value_N  its value of the N-th pricing-group key -#}
{% macro event_values(relation, catalog) -%}
with events_read as (
    {{ with_event_properties(relation, catalog) }}
)

select
    events_read.event_id,
    events_read.transaction_id,
    events_read.external_subscription_id,
    events_read.external_customer_id,
    events_read.metric_code,
    events_read.event_at,
    events_read.loaded_at,
    events_read.properties,
    events_read.batch_id,
    events_read.source_file,
    events_read.source_row,
    {{ owner_kind_of('events_read.external_subscription_id is null') }} as owner_kind,
    coalesce(events_read.external_subscription_id, events_read.external_customer_id) as owner_id,
    {%- for key in catalog['filter_keys'] %}
    case when {{ event_property('events_read', catalog, key, catalog['filter_metrics'][key]) }}
            in ({{ sql_text_list(catalog['filter_values'][key]) }})
        then {{ event_property('events_read', catalog, key, catalog['filter_metrics'][key]) }}
    end as filter_value_{{ loop.index }},
    {%- endfor %}
    {%- for key in catalog['group_keys'] %}
    {{ event_property('events_read', catalog, key, catalog['group_metrics'][key]) }} as group_value_{{ loop.index }},
    {%- endfor %}
    case
        when 1 = 0 then cast(null as {{ quantity_type() }})
        {%- for metric in catalog['metrics'] %}
        when events_read.metric_code = {{ sql_text(metric['code']) }} then
            {%- if metric['aggregation'] in ('count', 'unique_count') %} cast(1 as {{ quantity_type() }})
            {%- else %} cast({{ event_property('events_read', catalog, metric['field'], [metric['code']]) }} as {{ quantity_type() }})
            {%- endif %}
        {%- endfor %}
    end as units,
    {%- set unique_metrics = catalog['metrics'] | selectattr('aggregation', 'equalto', 'unique_count') | list %}
    {%- if unique_metrics %}
    case
        {%- for metric in unique_metrics %}
        when events_read.metric_code = {{ sql_text(metric['code']) }}
            then {{ event_property('events_read', catalog, metric['field'], [metric['code']]) }}
        {%- endfor %}
    end as unique_value,
    case
        {%- for metric in unique_metrics %}
        when events_read.metric_code = {{ sql_text(metric['code']) }}
            then coalesce({{ event_property('events_read', catalog, 'operation_type', [metric['code']]) }}, 'add')
        {%- endfor %}
    end as operation_type
    {%- else %}
    cast(null as {{ dbt.type_string() }}) as unique_value,
    cast(null as {{ dbt.type_string() }}) as operation_type
    {%- endif %}
from events_read
{%- endmacro %}

{#- Who owns an event, named: 'customer' when `is_customer_owned` (the event names no
    subscription), else 'subscription'. -#}
{% macro owner_kind_of(is_customer_owned) -%}
    case when {{ is_customer_owned }} then 'customer' else 'subscription' end
{%- endmacro %}

{#- What matching reads besides the events: the calendar's pieces and the plans' default prices
    (CTEs `pieces` and `default_prices`). -#}
{% macro metering_lookups() -%}
pieces as (
    select * from {{ ref('int_metering_calendar') }}
),

default_prices as (
    select * from {{ ref('stg_catalog__charges') }}
    where filter_position is null
)
{%- endmacro %}

{#- The join of `relation` (rows with owner_kind, owner_id, metric_code and event_at) to the
    piece of the calendar its time falls in and to the plan's default price for its metric. -#}
{% macro join_pieces_and_prices(relation) -%}
left join pieces
    on pieces.owner_kind = {{ relation }}.owner_kind
    and pieces.owner_id = {{ relation }}.owner_id
    and pieces.utc_date = cast({{ relation }}.event_at as date)
    and {{ relation }}.event_at >= pieces.piece_start_at
    and {{ relation }}.event_at < pieces.piece_end_at
left join default_prices
    on pieces.plan_code = default_prices.plan_code
    and {{ relation }}.metric_code = default_prices.metric_code
{%- endmacro %}

{#- The columns join_pieces_and_prices adds: the period, subscription, customer and local date
    of the piece, and the plan's default charge. -#}
{% macro piece_and_price_columns() -%}
    pieces.billing_period_id,
    pieces.subscription_id,
    pieces.customer_id,
    pieces.usage_date,
    default_prices.charge_id,
    default_prices.is_pay_in_advance,
{%- endmacro %}

{#- Why a row of `relation` (joined by join_pieces_and_prices) is not billed, or null:
    after_cutoff (held back: it happens after the run's as_of), unmatched (no billing period of
    its owner covers it: the owner decides the reason, classify_unmatched), metric_not_in_plan,
    beyond_lookback. -#}
{% macro exclusion_reason(relation) -%}
    case
        when {{ relation }}.event_at >= {{ as_of_timestamp() }} then 'after_cutoff'
        when pieces.billing_period_id is null then 'unmatched'
        when default_prices.charge_id is null then 'metric_not_in_plan'
        -- Loaded more than the billing entity's look-back after it happened: too late to bill.
        when pieces.late_events_lookback_days is not null
            and {{ relation }}.event_at < {{ dbt.dateadd('day', '0 - pieces.late_events_lookback_days', relation ~ '.loaded_at') }}
            then 'beyond_lookback'
    end
{%- endmacro %}

{#- Each event of `relation` with its values (event_values), the calendar piece and the charge
    that bill it (billing_period_id, subscription_id, customer_id, usage_date, charge_id,
    is_pay_in_advance) and its exclusion_reason (exclusion_reason). -#}
{% macro match_events(relation, catalog) -%}
with valued as (
    {{ event_values(relation, catalog) }}
),

{{ metering_lookups() }}

select
    valued.event_id,
    valued.transaction_id,
    valued.external_subscription_id,
    valued.external_customer_id,
    valued.metric_code,
    valued.event_at,
    valued.loaded_at,
    valued.properties,
    valued.batch_id,
    valued.source_file,
    valued.source_row,
    valued.owner_kind,
    valued.owner_id,
    {{ piece_and_price_columns() }}
    valued.units,
    valued.unique_value,
    valued.operation_type,
    {%- for key in catalog['filter_keys'] %}
    valued.filter_value_{{ loop.index }},
    {%- endfor %}
    {%- for key in catalog['group_keys'] %}
    valued.group_value_{{ loop.index }},
    {%- endfor %}
    {{ exclusion_reason('valued') }} as exclusion_reason
from valued
{{ join_pieces_and_prices('valued') }}
{%- endmacro %}

{#- The look-back limits (days) of the billing entities in the calendar, for match_event_hours:
    read once per model, which may meter several sets of events. -#}
{% macro calendar_lookback_days() -%}
    {%- set days = [] %}
    {%- if execute %}
        {%- for row in run_query("select distinct late_events_lookback_days from " ~ ref('int_metering_calendar')
                                 ~ " where late_events_lookback_days is not null").rows %}
            {%- do days.append(row[0] | int) %}
        {%- endfor %}
    {%- endif %}
    {{ return(days) }}
{%- endmacro %}

{#- The events of `relation` metered in bulk, counted and summed before they are matched: one
    row per owner, metric, load, hour of the events and their values (filter and group values),
    with event_count, units (their sum) and event_at (the hour's start, or in an hour something
    splits the events' own time), joined to the piece and price that bill them and classified
    like single events (match_events).
    lookback_days: calendar_lookback_days().
    Exact, because every event of such an hour is matched alike: an hour holding anything that
    may split it (a piece's start or end that is not on the hour, the as_of, the look-back
    limit of the load) is metered by the events' exact times instead. Matching 100M events one
    by one to the calendar cost more than reading and parsing them; their hours are 30 times
    fewer. -#}
{% macro match_event_hours(relation, catalog, lookback_days) -%}
with valued as (
    {{ event_values(relation, catalog) }}
),

{{ metering_lookups() }},

-- The hours some piece starts or ends within (rare: subscriptions start and end on the hour,
-- local days too, except in time zones offset by a fraction of an hour).
-- Who owns an event is grouped and joined as a boolean (is_customer_owned) and named after the
-- grouping: hashing and comparing the owner kind's text for every event cost about 1 s of the
-- 19 s that a full refresh of int_usage_increments took at 100M events (docs/engines.md).
split_hours as (
    select distinct pieces.owner_kind = 'customer' as is_customer_owned, pieces.owner_id,
        {{ dbt.date_trunc('hour', 'pieces.piece_start_at') }} as hour_at
    from pieces
    where pieces.piece_start_at <> {{ dbt.date_trunc('hour', 'pieces.piece_start_at') }}
    union
    select distinct pieces.owner_kind = 'customer', pieces.owner_id, {{ dbt.date_trunc('hour', 'pieces.piece_end_at') }}
    from pieces
    where pieces.piece_end_at <> {{ dbt.date_trunc('hour', 'pieces.piece_end_at') }}
),

hourly_grouped as (
    select
        valued.external_subscription_id is null as is_customer_owned,
        valued.owner_id,
        valued.metric_code,
        valued.loaded_at,
        case
            when split_hours.hour_at is not null
                or {{ dbt.date_trunc('hour', 'valued.event_at') }} = {{ dbt.date_trunc('hour', as_of_timestamp()) }}
                {%- for days in lookback_days %}
                or {{ dbt.date_trunc('hour', 'valued.event_at') }}
                    = {{ dbt.date_trunc('hour', dbt.dateadd('day', 0 - days, 'valued.loaded_at')) }}
                {%- endfor %}
                then valued.event_at
            else {{ dbt.date_trunc('hour', 'valued.event_at') }}
        end as event_at,
        {{ metering_value_columns('valued', catalog) }}
        count(*) as event_count,
        sum(valued.units) as units
    from valued
    left join split_hours
        on split_hours.is_customer_owned = (valued.external_subscription_id is null)
        and split_hours.owner_id = valued.owner_id
        and split_hours.hour_at = {{ dbt.date_trunc('hour', 'valued.event_at') }}
    group by 1, 2, 3, 4, 5{% for key in catalog['filter_keys'] + catalog['group_keys'] %}, {{ loop.index + 5 }}{% endfor %}
),

hourly as (
    select
        {{ owner_kind_of('hourly_grouped.is_customer_owned') }} as owner_kind,
        hourly_grouped.*
    from hourly_grouped
)

select
    hourly.metric_code,
    hourly.loaded_at,
    hourly.owner_kind,
    hourly.owner_id,
    {{ piece_and_price_columns() }}
    {{ metering_value_columns('hourly', catalog) }}
    hourly.event_count,
    hourly.units,
    {{ exclusion_reason('hourly') }} as exclusion_reason
from hourly
{{ join_pieces_and_prices('hourly') }}
{%- endmacro %}

{#- The grouping columns match_events adds for filters and pricing groups. -#}
{% macro metering_value_columns(relation, catalog) -%}
    {%- for key in catalog['filter_keys'] %}{{ relation }}.filter_value_{{ loop.index }}, {% endfor -%}
    {%- for key in catalog['group_keys'] %}{{ relation }}.group_value_{{ loop.index }}, {% endfor -%}
{%- endmacro %}

{#- For the rows of `relation` (matched events, or their aggregates) with a default charge_id
    and filter_value_N / group_value_N columns: the price that bills them (the filter with the
    most keys all of whose keys accept the values, then the first declared; else the charge's
    default price) and the pricing group (group_key). A select over `relation`'s distinct
    combinations: join it back on charge_id and the value columns. -#}
{% macro resolve_prices(relation, catalog) -%}
with combinations as (
    select distinct
        {{ relation }}.charge_id,
        {%- for key in catalog['filter_keys'] %}
        {{ relation }}.filter_value_{{ loop.index }},
        {%- endfor %}
        {%- for key in catalog['group_keys'] %}
        {{ relation }}.group_value_{{ loop.index }},
        {%- endfor %}
        1 as present
    from {{ relation }}
    where {{ relation }}.charge_id is not null
),

{%- set value_columns = [] %}
{%- for key in catalog['filter_keys'] %}{% do value_columns.append('filter_value_' ~ loop.index) %}{% endfor %}
{%- for key in catalog['group_keys'] %}{% do value_columns.append('group_value_' ~ loop.index) %}{% endfor %}

filter_matches as (
    select
        combinations.charge_id,
        {%- for column in value_columns %}
        combinations.{{ column }},
        {%- endfor %}
        filter_values.charge_id as filter_charge_id,
        filter_values.filter_key_count,
        filter_values.filter_position
    from combinations
    inner join {{ ref('stg_catalog__charge_filter_values') }} as filter_values
        on combinations.charge_id = filter_values.parent_charge_id
        and filter_values.filter_value =
            {%- if catalog['filter_keys'] %} case filter_values.filter_key
            {%- for key in catalog['filter_keys'] %}
            when {{ sql_text(key) }} then combinations.filter_value_{{ loop.index }}
            {%- endfor %}
        end
            {%- else %} cast(null as {{ dbt.type_string() }})
            {%- endif %}
    group by
        combinations.charge_id,
        {%- for column in value_columns %}
        combinations.{{ column }},
        {%- endfor %}
        filter_values.charge_id, filter_values.filter_key_count, filter_values.filter_position
    having count(*) = filter_values.filter_key_count
),

best_filters as (
    select ranked.*
    from (
        select
            filter_matches.*,
            row_number() over (
                partition by filter_matches.charge_id
                    {%- for column in value_columns %}, filter_matches.{{ column }}{% endfor %}
                order by filter_matches.filter_key_count desc, filter_matches.filter_position
            ) as specificity_rank
        from filter_matches
    ) as ranked
    where ranked.specificity_rank = 1
)

select
    combinations.charge_id,
    {%- for column in value_columns %}
    combinations.{{ column }},
    {%- endfor %}
    coalesce(best_filters.filter_charge_id, combinations.charge_id) as price_charge_id,
    -- Pricing groups: the event's values of the charge's group keys, e.g. "region=eu".
    case when charges.group_key_1 is not null then
        charges.group_key_1 || '=' || coalesce({{ group_value_of('combinations', catalog, 'charges.group_key_1') }}, '')
        || case when charges.group_key_2 is not null then
            '|' || charges.group_key_2 || '=' || coalesce({{ group_value_of('combinations', catalog, 'charges.group_key_2') }}, '')
            else '' end
        || case when charges.group_key_3 is not null then
            '|' || charges.group_key_3 || '=' || coalesce({{ group_value_of('combinations', catalog, 'charges.group_key_3') }}, '')
            else '' end
    end as group_key
from combinations
left join best_filters
    on combinations.charge_id = best_filters.charge_id
    {%- for column in value_columns %}
    and {{ null_safe_equal('combinations.' ~ column, 'best_filters.' ~ column) }}
    {%- endfor %}
left join {{ ref('stg_catalog__charges') }} as charges
    on combinations.charge_id = charges.charge_id
{%- endmacro %}

{% macro group_value_of(relation, catalog, key_expression) -%}
    {%- if catalog['group_keys'] -%}
    case {{ key_expression }}
        {%- for key in catalog['group_keys'] %}
        when {{ sql_text(key) }} then {{ relation }}.group_value_{{ loop.index }}
        {%- endfor %}
    end
    {%- else -%}
    cast(null as {{ dbt.type_string() }})
    {%- endif -%}
{%- endmacro %}

{#- Equality that holds between two nulls: the value columns are null where a metric has no
    such key, and a join on them must still pair the rows. Dispatched because the engines that
    hash on the null-safe operator (DuckDB's `is not distinct from`, Spark's `<=>`) keep the
    join a hash join; with the portable `or` spelling DuckDB checks it row by row after hashing
    on the charge alone (0.6 s of int_events_itemised's 4.7 s at 100M events). PostgreSQL hashes
    neither spelling, so it keeps the portable one. -#}
{% macro null_safe_equal(left, right) -%}
    {{ return(adapter.dispatch('null_safe_equal', 'meterline')(left, right)) }}
{%- endmacro %}

{% macro default__null_safe_equal(left, right) -%}
    ({{ left }} = {{ right }} or ({{ left }} is null and {{ right }} is null))
{%- endmacro %}

{% macro duckdb__null_safe_equal(left, right) -%}
    {{ left }} is not distinct from {{ right }}
{%- endmacro %}

{% macro spark__null_safe_equal(left, right) -%}
    {{ left }} <=> {{ right }}
{%- endmacro %}

{#- The join of `relation` (rows with charge_id and the value columns) to resolve_prices' rows
    (aliased `prices`). -#}
{% macro join_resolved_prices(relation, catalog) -%}
    left join prices
        on {{ relation }}.charge_id = prices.charge_id
        {%- for key in catalog['filter_keys'] %}
        and {{ null_safe_equal(relation ~ '.filter_value_' ~ loop.index, 'prices.filter_value_' ~ loop.index) }}
        {%- endfor %}
        {%- for key in catalog['group_keys'] %}
        and {{ null_safe_equal(relation ~ '.group_value_' ~ loop.index, 'prices.group_value_' ~ loop.index) }}
        {%- endfor %}
{%- endmacro %}

{#- An invoice line's id: a hash of its grain (billing period, price, pricing group), and for a
    charge paid in advance also the event's transaction id (each such event is a line). -#}
{% macro invoice_line_id(billing_period_id, price_charge_id, group_key, is_pay_in_advance, transaction_id) -%}
    {{ dbt.hash(billing_period_id ~ " || '|' || " ~ price_charge_id
                ~ " || coalesce('|' || " ~ group_key ~ ", '')"
                ~ " || case when " ~ is_pay_in_advance ~ " then '|advance|' || " ~ transaction_id ~ " else '' end") }}
{%- endmacro %}

{#- The reason an event that no billing period covers is not billed, from its owner alone:
    a subscription that does not exist, or exists but does not cover the instant; a customer
    that does not exist, or has no subscription then (a subscription's periods cover it from its
    start until the run's as_of, so a customer's active subscription always has one). -#}
{% macro classify_unmatched(owner_kind, owner_id) -%}
    case
        when {{ owner_kind }} = 'subscription' then
            case when {{ owner_id }} in (select external_subscription_id from {{ ref('int_subscriptions') }})
                then 'outside_subscription_period' else 'unknown_subscription' end
        else
            case when {{ owner_id }} in (select customer_id from {{ ref('stg_catalog__customers') }})
                then 'no_active_subscription' else 'unknown_customer' end
    end
{%- endmacro %}

{#- What an event matched by match_events (`matched`) is billed on, joined to its resolved
    price (`prices`, join_resolved_prices): its line and the units it counts there, or why it
    is excluded. One projection for the per-event models (int_events_itemised,
    int_events_matched), so they agree column for column. -#}
{% macro billed_event_columns(matched='matched', prices='prices') -%}
        case when {{ matched }}.exclusion_reason is null then {{ matched }}.billing_period_id end as billing_period_id,
        case when {{ matched }}.exclusion_reason is null then {{ matched }}.subscription_id end as subscription_id,
        case when {{ matched }}.exclusion_reason is null then {{ matched }}.customer_id end as customer_id,
        case when {{ matched }}.exclusion_reason is null then {{ matched }}.usage_date end as usage_date,
        -- The price the event is billed at: the charge's default, or the filter it matched.
        case when {{ matched }}.exclusion_reason is null then {{ prices }}.price_charge_id end as charge_id,
        case when {{ matched }}.exclusion_reason is null then {{ prices }}.group_key end as group_key,
        case when {{ matched }}.exclusion_reason is null then
            {{ invoice_line_id(matched ~ '.billing_period_id', prices ~ '.price_charge_id', prices ~ '.group_key',
                               matched ~ '.is_pay_in_advance', matched ~ '.transaction_id') }}
        end as invoice_line_id,
        coalesce({{ matched }}.is_pay_in_advance, false) as is_pay_in_advance,
        case when {{ matched }}.exclusion_reason is null then {{ matched }}.units end as units,
        case when {{ matched }}.exclusion_reason is null then {{ matched }}.unique_value end as unique_value,
        case when {{ matched }}.exclusion_reason is null then {{ matched }}.operation_type end as operation_type,
        case when {{ matched }}.exclusion_reason = 'unmatched'
            then {{ classify_unmatched(matched ~ '.owner_kind', matched ~ '.owner_id') }}
            else {{ matched }}.exclusion_reason
        end as exclusion_reason
{%- endmacro %}
