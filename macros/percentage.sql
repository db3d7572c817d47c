{#- Percentage charges (docs/charge-models.md), shared by the period's fee (int_percentage_fees)
    and progressive billing's usage to date (int_usage_checkpoints). Both price the same
    events in time order (event_at, then event_id); every per-event figure depends only on the
    events before it, so the usage to date is the same arithmetic over a prefix of them.

    `charge_fees` names a relation with invoice_line_id, rate, fixed_amount, free_events_limit,
    free_amount_limit (0 when unset), per_transaction_min_amount and per_transaction_max_amount;
    `events` one with invoice_line_id, units, event_at and event_id. -#}

{#- Each event with its number and the running total of the line's values, in time order. -#}
{% macro percentage_ordered_events(charge_fees, events) -%}
    select
        {{ events }}.*,
        {{ events }}.units as event_value,
        row_number() over (
            partition by {{ events }}.invoice_line_id
            order by {{ events }}.event_at, {{ events }}.event_id
        ) as event_number,
        sum({{ events }}.units) over (
            partition by {{ events }}.invoice_line_id
            order by {{ events }}.event_at, {{ events }}.event_id
            rows between unbounded preceding and current row
        ) as running_total
    from {{ events }}
    inner join {{ charge_fees }}
        on {{ events }}.invoice_line_id = {{ charge_fees }}.invoice_line_id
{%- endmacro %}

{#- Each ordered event, priced: whether it counts for the free units (the first N events when a
    number of free events is set, else the events while the total before them is within the free
    amount), whether it is within the free amount, and its own amount when a per-transaction
    minimum or maximum is set (what is left of the free amount comes off the event that
    exhausts it), held between them. -#}
{% macro percentage_priced_events(charge_fees, ordered) -%}
    select
        unclamped.*,
        -- Every branch keeps 18 decimals: a CASE takes one branch's type, and the limits' 12
        -- decimals would round each event before the sum (the line is rounded once, later).
        case
            when unclamped.unclamped_transaction_amount is null then cast(0 as decimal(38, 18))
            when unclamped.per_transaction_min_amount is not null
                and unclamped.unclamped_transaction_amount < unclamped.per_transaction_min_amount
                then cast(unclamped.per_transaction_min_amount as decimal(38, 18))
            when unclamped.per_transaction_max_amount is not null
                and unclamped.unclamped_transaction_amount > unclamped.per_transaction_max_amount
                then cast(unclamped.per_transaction_max_amount as decimal(38, 18))
            else cast(unclamped.unclamped_transaction_amount as decimal(38, 18))
        end as transaction_amount
    from (
        select
            {{ ordered }}.*,
            {{ charge_fees }}.per_transaction_min_amount,
            {{ charge_fees }}.per_transaction_max_amount,
            case
                when {{ charge_fees }}.free_events_limit > 0 then {{ ordered }}.event_number <= {{ charge_fees }}.free_events_limit
                when {{ charge_fees }}.free_amount_limit > 0
                    then {{ ordered }}.running_total - {{ ordered }}.event_value <= {{ charge_fees }}.free_amount_limit
                else false
            end as counts_for_free_units,
            ({{ ordered }}.running_total < {{ charge_fees }}.free_amount_limit) as is_under_free_amount,
            case
                when {{ charge_fees }}.free_amount_limit > 0 and {{ ordered }}.running_total < {{ charge_fees }}.free_amount_limit
                    then null
                when {{ charge_fees }}.free_amount_limit > 0
                    and {{ ordered }}.running_total - {{ ordered }}.event_value < {{ charge_fees }}.free_amount_limit
                    then ({{ ordered }}.running_total - {{ charge_fees }}.free_amount_limit) * {{ charge_fees }}.rate * 0.01
                        + coalesce({{ charge_fees }}.fixed_amount, 0)
                when {{ charge_fees }}.free_amount_limit = 0 and {{ ordered }}.event_number <= {{ charge_fees }}.free_events_limit
                    then null
                else {{ ordered }}.event_value * {{ charge_fees }}.rate * 0.01 + coalesce({{ charge_fees }}.fixed_amount, 0)
            end as unclamped_transaction_amount
        from {{ ordered }}
        inner join {{ charge_fees }}
            on {{ ordered }}.invoice_line_id = {{ charge_fees }}.invoice_line_id
    ) as unclamped
{%- endmacro %}

{#- The free units from the running total of the last event that counts for them: all of it,
    or the free amount when it went beyond. Branches cast to money precision: the free amount
    may have 12 decimals, the running totals 9, and a CASE would otherwise take the narrower type. -#}
{% macro percentage_free_units(last_free_list_total, free_amount_limit) -%}
    case
        when coalesce({{ last_free_list_total }}, 0) = 0 then {{ to_precise_money('0') }}
        when {{ free_amount_limit }} = 0 then {{ to_precise_money(last_free_list_total) }}
        when {{ last_free_list_total }} <= {{ free_amount_limit }} then {{ to_precise_money(last_free_list_total) }}
        else {{ to_precise_money(free_amount_limit) }}
    end
{%- endmacro %}

{#- Events free of the fixed fee: the smaller of the two limits that are not zero. -#}
{% macro percentage_free_events(free_events_limit, events_under_free_amount) -%}
    case
        when {{ free_events_limit }} > 0 and coalesce({{ events_under_free_amount }}, 0) > 0
            then least({{ free_events_limit }}, {{ events_under_free_amount }})
        when {{ free_events_limit }} > 0 then {{ free_events_limit }}
        else coalesce({{ events_under_free_amount }}, 0)
    end
{%- endmacro %}

{#- rate % of the units above the free units. -#}
{% macro percentage_rate_amount(units, free_units, rate) -%}
    case when {{ free_units }} > {{ units }} then 0
        else ({{ units }} - {{ free_units }}) * {{ rate }} * 0.01
    end
{%- endmacro %}

{#- The fixed fee of each event beyond the free ones. -#}
{% macro percentage_fixed_fee_amount(units, fixed_amount, event_count, free_events) -%}
    case
        when {{ units }} = 0 or {{ fixed_amount }} is null then 0
        when {{ free_events }} >= {{ event_count }} then 0
        else ({{ event_count }} - {{ free_events }}) * {{ fixed_amount }}
    end
{%- endmacro %}

{#- The line's precise amount: the events priced one by one with per-transaction limits, else
    the rate on the units above the free ones plus the fixed fees. -#}
{% macro percentage_line_amount(has_limits, amount_per_transaction, rate_amount, fixed_fee_amount) -%}
    {{ to_precise_money("case when " ~ has_limits ~ " then " ~ amount_per_transaction
                        ~ " else " ~ rate_amount ~ " + " ~ fixed_fee_amount ~ " end") }}
{%- endmacro %}
