{#- The revenue stream of an invoice line's fee kind (docs/revenue.md). -#}
{% macro revenue_stream(fee_kind) -%}
    case {{ fee_kind }}
        when 'subscription' then 'subscription'
        when 'charge' then 'usage'
        when 'true_up' then 'minimum_commitment'
        else 'one_off'
    end
{%- endmacro %}

{#- day / days for a whole day number 0 <= day <= days (days >= 1): the same value as
    exact_ratio(day, days), rounded half-up to 12 decimals. Day counts are small, so DuckDB can
    do it in 64-bit integers instead of exact_ratio's 128-bit ones, which cost seconds over the
    millions of rows of a revenue schedule. -#}
{% macro day_share(day, days) -%}
    {{ return(adapter.dispatch('day_share', 'meterline')(day, days)) }}
{%- endmacro %}

{% macro default__day_share(day, days) -%}
    {{ exact_ratio(day, days) }}
{%- endmacro %}

{% macro duckdb__day_share(day, days) -%}
    {#- round(d / n, 12) half-up = floor((2 d 10^12 + n) / 2n); exact while 2 d 10^12 fits in
        a bigint (days under 4 million). -#}
    cast(
        (2 * cast({{ day }} as bigint) * 1000000000000 + cast({{ days }} as bigint))
            // (2 * cast({{ days }} as bigint))
        as decimal(38, 0)
    ) * cast(0.000000000001 as decimal(13, 12))
{%- endmacro %}
