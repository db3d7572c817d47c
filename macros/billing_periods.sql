{#- The billing calendar's arithmetic (docs/billing-calendar.md), shared by int_subscriptions
    (when a downgrade takes effect) and int_billing_periods (every period). -#}

{#- Months per period of a plan interval; 0 for weekly periods (counted in days). -#}
{% macro interval_months(billing_interval) -%}
    case {{ billing_interval }}
        when 'monthly' then 1
        when 'quarterly' then 3
        when 'semiannual' then 6
        when 'yearly' then 12
        else 0
    end
{%- endmacro %}

{#- The local instant periods are counted from: the start day (anniversary), else the
    calendar start (a Monday, the 1st, a quarter, 1 January or 1 July, 1 January). -#}
{% macro billing_anchor(billing_time, billing_interval, started_local) -%}
    cast(
        case
            when {{ billing_time }} = 'anniversary' then {{ dbt.date_trunc('day', started_local) }}
            when {{ billing_interval }} = 'weekly' then {{ dbt.date_trunc('week', started_local) }}
            when {{ billing_interval }} = 'monthly' then {{ dbt.date_trunc('month', started_local) }}
            when {{ billing_interval }} = 'quarterly' then {{ dbt.date_trunc('quarter', started_local) }}
            when {{ billing_interval }} = 'semiannual' then {{ dbt.dateadd(
                'month', 'case when extract(month from ' ~ started_local ~ ') >= 7 then 6 else 0 end',
                dbt.date_trunc('year', started_local)) }}
            else {{ dbt.date_trunc('year', started_local) }}
        end
        as timestamp
    )
{%- endmacro %}

{#- Start of period n (local): anchor + n periods, always from the anchor, so an anniversary on
    the 31st clamps to shorter months and comes back. step_months 0 = weeks. -#}
{% macro period_boundary(anchor_local, step_months, n) -%}
    cast(
        case when {{ step_months }} = 0
            then {{ dbt.dateadd('day', '7 * (' ~ n ~ ')', anchor_local) }}
            else {{ dbt.dateadd('month', '(' ~ step_months ~ ') * (' ~ n ~ ')', anchor_local) }}
        end
        as timestamp
    )
{%- endmacro %}

{#- An upper bound of the index of the period holding local_instant (exact for weeks and
    calendar months; an anniversary month may start after it, see period_index_at). -#}
{% macro period_index_bound(anchor_local, step_months, local_instant) -%}
    cast(floor(
        case when {{ step_months }} = 0
            then {{ dbt.datediff(anchor_local, local_instant, 'day') }} / 7.0
            else {{ dbt.datediff(anchor_local, local_instant, 'month') }} / (1.0 * ({{ step_months }}))
        end
    ) as integer)
{%- endmacro %}

{#- The index of the period that holds local_instant. -#}
{% macro period_index_at(anchor_local, step_months, local_instant) -%}
    ({{ period_index_bound(anchor_local, step_months, local_instant) }}
     - case when {{ period_boundary(anchor_local, step_months,
                                    period_index_bound(anchor_local, step_months, local_instant)) }}
                 > {{ local_instant }} then 1 else 0 end)
{%- endmacro %}
