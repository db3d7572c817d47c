{#- A one-column relation `n` holding the integers 0..upper_bound (inclusive), where
    upper_bound is a SQL expression. Used to spell out billing periods. -#}
{% macro integer_series(upper_bound) -%}
    {{ return(adapter.dispatch('integer_series', 'meterline')(upper_bound)) }}
{%- endmacro %}

{% macro default__integer_series(upper_bound) -%}
    (select cast(generate_series as integer) as n from generate_series(0, cast({{ upper_bound }} as integer)))
{%- endmacro %}

{% macro duckdb__integer_series(upper_bound) -%}
    (select cast(range as integer) as n from range(0, ({{ upper_bound }}) + 1))
{%- endmacro %}

{% macro spark__integer_series(upper_bound) -%}
    (select explode(sequence(0, {{ upper_bound }})) as n)
{%- endmacro %}
