{#- One of Spark's planner switches off for one model, as a pre-hook, and back to the session's
    setting as its post-hook; nothing on other engines. int_usage_checkpoints turns off two:
    - spark.sql.adaptive.enabled: Spark inlines every CTE reference, so a model with many CTEs
      read several times (the progressive billing checkpoints) becomes one very large plan.
      Adaptive execution plans it again after every stage it runs, canonicalising the whole tree
      to find reusable exchanges: on the 12-customer demo that re-planning alone ran for over ten
      minutes, while the static plan runs the model in about half a minute (docs/engines.md).
    - spark.sql.constraintPropagation.enabled: the optimiser infers filters from every join and
      alias, and the checkpoints' tiers are priced once per charge and quantity and joined back
      on that quantity, an alias of the long rounding expression; inferring constraints over it
      exhausted a 2g driver heap on the demo (1g with it off is enough). It only adds redundant
      filters: the results are the same. -#}
{% macro spark_planner_switch(setting, enabled) -%}
    {{ return(adapter.dispatch('spark_planner_switch', 'meterline')(setting, enabled)) }}
{%- endmacro %}

{% macro default__spark_planner_switch(setting, enabled) -%}
{%- endmacro %}

{% macro spark__spark_planner_switch(setting, enabled) -%}
    {%- if enabled -%}
        reset {{ setting }}
    {%- else -%}
        set {{ setting }} = false
    {%- endif -%}
{%- endmacro %}
