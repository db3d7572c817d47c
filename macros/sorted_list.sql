{#- The values of a group joined by a delimiter in ascending order (an aggregate), so the text
    is the same on every engine. dbt.listagg takes an order by, but dbt-spark's variant ignores
    it (collect_list keeps no order): Spark sorts the collected array instead. -#}
{% macro sorted_list(measure, delimiter_text) -%}
    {{ return(adapter.dispatch('sorted_list', 'meterline')(measure, delimiter_text)) }}
{%- endmacro %}

{% macro default__sorted_list(measure, delimiter_text) -%}
    {{ dbt.listagg(measure, delimiter_text, 'order by ' ~ measure) }}
{%- endmacro %}

{% macro spark__sorted_list(measure, delimiter_text) -%}
    array_join(array_sort(collect_list({{ measure }})), {{ delimiter_text }})
{%- endmacro %}
