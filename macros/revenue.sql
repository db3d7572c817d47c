{#- The revenue stream of an invoice line's fee kind (docs/revenue.md). -#}
{% macro revenue_stream(fee_kind) -%}
    case {{ fee_kind }}
        when 'subscription' then 'subscription'
        when 'charge' then 'usage'
        when 'true_up' then 'minimum_commitment'
        else 'one_off'
    end
{%- endmacro %}
