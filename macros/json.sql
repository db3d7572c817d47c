{#- Reading one top-level property of the JSON text in `properties` as text. `key` is a SQL
    expression (a column holding the property name, or a quoted literal). -#}
{% macro json_property_text(json_text, key) -%}
    {{ return(adapter.dispatch('json_property_text', 'meterline')(json_text, key)) }}
{%- endmacro %}

{% macro default__json_property_text(json_text, key) -%}
    json_extract_string({{ json_text }}, '$.' || {{ key }})
{%- endmacro %}

{% macro postgres__json_property_text(json_text, key) -%}
    (cast({{ json_text }} as json) ->> {{ key }})
{%- endmacro %}

{% macro spark__json_property_text(json_text, key) -%}
    get_json_object({{ json_text }}, concat('$.', {{ key }}))
{%- endmacro %}
