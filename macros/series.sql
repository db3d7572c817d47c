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

{#- One row per calendar month (month_start, month_end: its first and last day) from the month
    of the smallest `first_day` over `relation` to the month of the run's as_of; no rows when
    `relation` is empty. A subquery: give it an alias. -#}
{% macro calendar_months(relation, first_day) -%}
    (select
        cast({{ dbt.dateadd('month', 'series.n', 'bounds.first_month') }} as date) as month_start,
        cast({{ dbt.dateadd('day', -1, dbt.dateadd('month', 'series.n + 1', 'bounds.first_month')) }} as date)
            as month_end
    from (
        select
            cast({{ dbt.date_trunc('month', 'min(' ~ first_day ~ ')') }} as date) as first_month,
            cast({{ dbt.date_trunc('month', as_of_timestamp()) }} as date) as last_month
        from {{ relation }}
    ) as bounds
    cross join lateral {{ integer_series(dbt.datediff('bounds.first_month', 'bounds.last_month', 'month')) }} as series
    where bounds.first_month is not null)
{%- endmacro %}
