{#- Month-end close (docs/revenue.md): the figures of a month that was closed
    (ledger.month_closes, written by `meterline report` for a finished month) are read as they
    were locked (`locked`, a ledger.closed_* table with the mart's columns) and never computed
    again. What a later correction changed in a closed month (computed now, `live`, minus
    locked) is booked in the first month still open, as `prior_period_adjustment` rows of its
    flow columns; balances are always as computed at a month's end, so they need none.
    `live` and `locked` are CTEs; `live` has the mart's columns but row_kind. Emits CTEs
    (after a comma) and the final select. -#}
{% macro figures_with_month_closes(live, locked, key_columns, flow_columns, balance_columns) -%}
last_close as (
    select max(month_start) as month_start from {{ source('ledger', 'month_closes') }}
),

open_rows as (
    select
        {{ live }}.month_start,
        'period' as row_kind,
        {% for column in key_columns + flow_columns + balance_columns %}{{ live }}.{{ column }}{% if not loop.last %},
        {% endif %}{% endfor %}
    from {{ live }}
    cross join last_close
    where last_close.month_start is null or {{ live }}.month_start > last_close.month_start
),

-- What the closed months hold now, less what they were locked with, per key (nulls group together).
differences as (
    select
        {% for column in key_columns %}{{ live }}.{{ column }},
        {% endfor %}{% for column in flow_columns %}{{ live }}.{{ column }}{% if not loop.last %},
        {% endif %}{% endfor %}
    from {{ live }}
    cross join last_close
    where {{ live }}.month_start <= last_close.month_start
    union all
    select
        {% for column in key_columns %}{{ locked }}.{{ column }},
        {% endfor %}{% for column in flow_columns %}-{{ locked }}.{{ column }}{% if not loop.last %},
        {% endif %}{% endfor %}
    from {{ locked }}
),

adjustments as (
    select
        cast({{ dbt.dateadd('month', 1, 'last_close.month_start') }} as date) as month_start,
        'prior_period_adjustment' as row_kind,
        {% for column in key_columns %}differences.{{ column }},
        {% endfor %}{% for column in flow_columns %}cast(sum(differences.{{ column }}) as {{ rounded_money_type() }})
            as {{ column }},
        {% endfor %}{% for column in balance_columns %}cast(0 as {{ rounded_money_type() }}) as {{ column }}{% if not loop.last %},
        {% endif %}{% endfor %}
    from differences
    cross join last_close
    group by last_close.month_start{% for column in key_columns %}, differences.{{ column }}{% endfor %}
    having {% for column in flow_columns %}{% if not loop.first %}
        or {% endif %}sum(differences.{{ column }}) <> 0{% endfor %}
),

final as (
    {% for relation, closed in [('open_rows', 'false'), ('adjustments', 'false'), (locked, 'true')] -%}
    {% if not loop.first %}union all
    {% endif -%}
    select
        month_start, row_kind,
        {% for column in key_columns + flow_columns + balance_columns %}{{ column }},
        {% endfor %}{{ closed }} as is_closed_month
    from {{ relation }}
    {% endfor %}
)

select * from final
{%- endmacro %}
