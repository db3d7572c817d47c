{#- Converting between UTC and a customer's local wall-clock time. Timestamps are stored as
    naive UTC; billing periods are computed on local time and stored back in UTC. -#}

{% macro from_utc(utc_timestamp, timezone) -%}
    {{ return(adapter.dispatch('from_utc', 'meterline')(utc_timestamp, timezone)) }}
{%- endmacro %}

{% macro default__from_utc(utc_timestamp, timezone) -%}
    cast((({{ utc_timestamp }}) at time zone 'UTC') at time zone {{ timezone }} as timestamp)
{%- endmacro %}

{% macro spark__from_utc(utc_timestamp, timezone) -%}
    from_utc_timestamp({{ utc_timestamp }}, {{ timezone }})
{%- endmacro %}

{% macro to_utc(local_timestamp, timezone) -%}
    {{ return(adapter.dispatch('to_utc', 'meterline')(local_timestamp, timezone)) }}
{%- endmacro %}

{% macro default__to_utc(local_timestamp, timezone) -%}
    cast((({{ local_timestamp }}) at time zone {{ timezone }}) at time zone 'UTC' as timestamp)
{%- endmacro %}

{% macro spark__to_utc(local_timestamp, timezone) -%}
    to_utc_timestamp({{ local_timestamp }}, {{ timezone }})
{%- endmacro %}

{#- Whole seconds from `first` to `second`, as an exact integer on every engine: dbt's
    postgres datediff adds date_part values, which are double precision, and a weighted sum's
    level x seconds must stay decimal. -#}
{% macro seconds_between(first, second) -%}
    cast({{ dbt.datediff(first, second, 'second') }} as bigint)
{%- endmacro %}

{#- The date of the instant just before `instant` (a timestamp): its own date, or the day before
    when it is exactly midnight. Exact where subtracting a second is not (a service that ends
    half a second after midnight still has that half second). -#}
{% macro date_before(instant) -%}
    cast({{ dbt.dateadd('day',
        'case when cast(cast(' ~ instant ~ ' as date) as timestamp) = ' ~ instant ~ ' then -1 else 0 end',
        'cast(' ~ instant ~ ' as date)') }} as date)
{%- endmacro %}
