{#- A finalised invoice's rows as the ledger issued them, every other invoice's rows as
    computed (docs/invoice-lifecycle.md). `computed` and `issued` are CTEs with the columns;
    `issued_invoices` lists the finalised invoices (by invoice_id). -#}
{% macro issued_or_computed(columns, computed='computed', issued='issued', issued_invoices='issued_invoices') -%}
    select {% for column in columns %}{{ computed }}.{{ column }}{% if not loop.last %}, {% endif %}{% endfor %}
    from {{ computed }}
    left join {{ issued_invoices }}
        on {{ computed }}.invoice_id = {{ issued_invoices }}.invoice_id
    where {{ issued_invoices }}.invoice_id is null

    union all

    select {% for column in columns %}{{ issued }}.{{ column }}{% if not loop.last %}, {% endif %}{% endfor %}
    from {{ issued }}
{%- endmacro %}
