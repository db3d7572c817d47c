{#- Spark's adaptive query execution off for one model, as a pre-hook, and back to the session's
    setting as its post-hook; nothing on other engines.
    Why: Spark inlines every CTE reference, so a model with many CTEs read several times (the
    progressive billing checkpoints) becomes one very large plan. Adaptive execution plans it
    again after every stage it runs, canonicalising the whole tree to find reusable exchanges:
    on the 12-customer demo that re-planning alone ran for over ten minutes, while the static
    plan runs the model in about half a minute (docs/engines.md). -#}
{% macro adaptive_execution(enabled) -%}
    {{ return(adapter.dispatch('adaptive_execution', 'meterline')(enabled)) }}
{%- endmacro %}

{% macro default__adaptive_execution(enabled) -%}
{%- endmacro %}

{% macro spark__adaptive_execution(enabled) -%}
    {%- if enabled -%}
        reset spark.sql.adaptive.enabled
    {%- else -%}
        set spark.sql.adaptive.enabled = false
    {%- endif -%}
{%- endmacro %}

{#- Spark's constraint propagation off for one model, the same way. Why: the optimiser infers
    filters from every join and alias, and in int_usage_checkpoints the tiers are priced once
    per charge and quantity and joined back on that quantity, an alias of the long rounding
    expression; inferring constraints over it exhausted a 2g driver heap on the 12-customer demo
    (1g with it off is enough). Results are the same: it only adds redundant filters. -#}
{% macro constraint_propagation(enabled) -%}
    {{ return(adapter.dispatch('constraint_propagation', 'meterline')(enabled)) }}
{%- endmacro %}

{% macro default__constraint_propagation(enabled) -%}
{%- endmacro %}

{% macro spark__constraint_propagation(enabled) -%}
    {%- if enabled -%}
        reset spark.sql.constraintPropagation.enabled
    {%- else -%}
        set spark.sql.constraintPropagation.enabled = false
    {%- endif -%}
{%- endmacro %}
