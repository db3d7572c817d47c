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

{#- The billing periods int_metering_calendar spells out, each with its customer's look-back and
    a fingerprint of everything its pieces are computed from: a select whose rows are aliased
    `calendar_periods`. -#}
{% macro calendar_periods() -%}
    select calendar_periods.*
    from (
        select
            periods.billing_period_id,
            periods.subscription_id,
            periods.external_subscription_id,
            periods.customer_id,
            periods.plan_code,
            periods.service_start_at,
            periods.service_end_at,
            periods.service_start_date,
            periods.billing_timezone,
            customers.late_events_lookback_days,
            {{ dbt.hash(dbt.concat([
                "periods.billing_period_id", "'|'", "periods.subscription_id", "'|'",
                "coalesce(periods.external_subscription_id, '')", "'|'", "periods.customer_id", "'|'",
                "periods.plan_code", "'|'", "cast(periods.service_start_at as " ~ dbt.type_string() ~ ")", "'|'",
                "cast(periods.service_end_at as " ~ dbt.type_string() ~ ")", "'|'",
                "cast(periods.service_start_date as " ~ dbt.type_string() ~ ")", "'|'", "periods.billing_timezone", "'|'",
                "coalesce(cast(customers.late_events_lookback_days as " ~ dbt.type_string() ~ "), '')"])) }}
                as period_fingerprint
        from {{ ref('int_billing_periods') }} as periods
        inner join {{ ref('stg_catalog__customers') }} as customers
            on periods.customer_id = customers.customer_id
    ) as calendar_periods
{%- endmacro %}

{#- int_metering_calendar's pre-hook on an incremental run: the pieces of periods that changed
    or no longer exist go, so the run adds them again (changed) or not at all (gone). -#}
{% macro stale_calendar_pieces_deletion() -%}
    delete from {{ this }}
    where not exists (
        select 1 from ({{ calendar_periods() }}) as current_periods
        where current_periods.billing_period_id = {{ this }}.billing_period_id
            and current_periods.period_fingerprint = {{ this }}.period_fingerprint
    )
{%- endmacro %}
