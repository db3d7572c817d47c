{#- The billing run's clock as a timestamp literal (var `as_of`, UTC). Periods ending after it
    are open: their invoices are drafts and their events pending. -#}
{% macro as_of_timestamp() -%}
    cast('{{ var("as_of") }}' as timestamp)
{%- endmacro %}
