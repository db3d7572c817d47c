{#- Models land in plain schemas named for their layer (staging, intermediate, marts,
    reference) instead of dbt's default "<target schema>_<layer>", so the SQL that people and
    exports write against does not change with the target. -#}
{% macro generate_schema_name(custom_schema_name, node) -%}
    {%- if custom_schema_name is none -%}{{ target.schema }}{%- else -%}{{ custom_schema_name | trim }}{%- endif -%}
{%- endmacro %}
