{#- The newest load (max loaded_at) and the newest run (max metered_at) in the bulk metering
    table, int_usage_increments, as timestamp literals ('' when it is empty or missing): loads
    after the first are new to the metering, and held-back events released after the second are
    not counted yet. int_events_itemised reads it by name: it runs before the increments, which
    read it, so that both meter the same new loads. -#}
{% macro metering_watermarks() -%}
    {%- set relation = adapter.get_relation(database=this.database, schema=this.schema,
                                            identifier='int_usage_increments') -%}
    {%- if relation is none or not execute -%}
        {{ return({'loaded_through': '', 'metered_through': ''}) }}
    {%- endif -%}
    {%- set row = run_query('select max(loaded_at), max(metered_at) from ' ~ relation).rows[0] -%}
    {{ return({'loaded_through': '' if row[0] is none else row[0] | string,
               'metered_through': '' if row[1] is none else row[1] | string}) }}
{%- endmacro %}
