{#- How many steps a model that applies a customer's coupons (or wallets) one after the other
    unrolls: as many as the customer with the most of them has in `relation` (counted per
    `owner_column`), at least one. Portable SQL has no loop, so each step is a few common table
    expressions reading the previous one; unrolling only the steps the data needs keeps the
    statement small (Spark's analyser resolves a deep plan in a bounded number of passes:
    docs/engines.md). The catalog never holds more than var(`limit_var`) per customer, so that
    is the most it can be, and what parsing, or compiling before the catalog's tables exist,
    assumes.
    A unit test of such a model overrides this macro with a number (its inputs are fixtures,
    not tables to count). -#}
{% macro unrolled_steps(relation, owner_column, limit_var) -%}
    {%- set most = var(limit_var) | int -%}
    {%- if not execute or load_relation(relation) is none -%}
        {{ return(most) }}
    {%- endif -%}
    {%- set counted = run_query(
        'select max(held) from (select count(*) as held from ' ~ relation ~ ' group by ' ~ owner_column ~ ') as owners'
    ).columns[0].values()[0] -%}
    {%- set held = (counted or 0) | int -%}
    {{ return([[held, 1] | max, most] | min) }}
{%- endmacro %}
