{{
    config(
        pre_hook=["{{ spark_planner_switch('spark.sql.adaptive.enabled', false) }}",
                  "{{ spark_planner_switch('spark.sql.constraintPropagation.enabled', false) }}"],
        post_hook=["{{ spark_planner_switch('spark.sql.adaptive.enabled', true) }}",
                   "{{ spark_planner_switch('spark.sql.constraintPropagation.enabled', true) }}"],
    )
}}
-- One row per charge line and checkpoint of a plan with usage thresholds (progressive billing)
-- or of a customer whose wallet tops up under a threshold: the line's usage to date and what it
-- costs (docs/invoice-amounts.md).
--
-- Checkpoints are the customer's local midnights strictly inside a billing period's service,
-- up to the run's as_of: checkpoint k is the start of local day service_start_date + k, and
-- counts the events of the local days before it. The usage to date is the metric's aggregation
-- over those events: count, sum (from the level carried in when recurring), max, latest,
-- unique count (of values added; when recurring, of values active since the period's start),
-- and a weighted sum's level x time accrued up to the checkpoint over the whole period's time
-- (the period's amount if usage stopped there). It is rounded as the metric rounds and priced
-- over the charge's tiers exactly as the period's fee is (macros/pricing.sql); a percentage
-- charge's events are priced one by one in time order as its fee is (macros/percentage.sql)
-- and its free units, free events and amount taken over the events so far. In-advance
-- charges are invoiced as their events come and are not part of it.
with thresholds as (
    select * from {{ ref('stg_catalog__usage_thresholds') }}
),

-- When the customer's wallet that tops up under a threshold opened (one per customer).
top_up_wallets as (
    select wallets.customer_id, min(wallets.started_at) as opened_at
    from {{ ref('stg_catalog__wallets') }} as wallets
    inner join {{ ref('stg_catalog__wallet_top_ups') }} as top_ups
        on wallets.wallet_id = top_ups.wallet_id
    where top_ups.threshold_credits is not null
    group by 1
),

-- Periods of plans with usage thresholds, and the periods of customers with such a wallet
-- whose usage is invoiced (at the service end) after it opened: the ongoing usage its checks
-- count (int_wallet_ongoing_usage). Earlier periods cannot touch a check.
billing_periods as (
    select periods.*
    from {{ ref('int_billing_periods') }} as periods
    left join top_up_wallets
        on periods.customer_id = top_up_wallets.customer_id
    where periods.plan_code in (select thresholds.plan_code from thresholds)
        or periods.service_end_at > top_up_wallets.opened_at
),

charge_units as (
    select * from {{ ref('int_charge_units') }}
),

charges as (
    select * from {{ ref('stg_catalog__charges') }}
),

tiers as (
    select * from {{ ref('stg_catalog__charge_tiers') }}
),

-- The events kept one by one (the metrics aggregated or priced event by event); the others are
-- counted and summed per local day (int_line_event_counts).
itemised_events as (
    select * from {{ ref('int_events_itemised') }}
    where invoice_line_id is not null
),

line_event_counts as (
    select * from {{ ref('int_line_event_counts') }}
),

unique_count_values as (
    select * from {{ ref('int_unique_count_values') }}
),

lines as (
    select
        charge_units.invoice_line_id,
        charge_units.billing_period_id,
        charge_units.charge_id,
        charge_units.group_key,
        charge_units.level_before,
        billing_periods.service_start_at,
        {{ seconds_between('billing_periods.service_start_at', 'billing_periods.service_end_at') }}
            as service_seconds,
        charges.aggregation,
        charges.is_recurring,
        charges.rounding_function,
        charges.rounding_step,
        charges.charge_model,
        charges.package_size,
        charges.free_units,
        charges.rate,
        charges.fixed_amount,
        coalesce(charges.free_units_per_events, 0) as free_events_limit,
        coalesce(charges.free_units_per_total_aggregation, 0) as free_amount_limit,
        charges.per_transaction_min_amount,
        charges.per_transaction_max_amount
    from charge_units
    inner join billing_periods
        on charge_units.billing_period_id = billing_periods.billing_period_id
    inner join charges
        on charge_units.charge_id = charges.charge_id
),

checkpoints as (
    select
        checkpoint_days.billing_period_id,
        checkpoint_days.checkpoint_index,
        {{ to_utc('cast(checkpoint_days.checkpoint_date as timestamp)', 'checkpoint_days.billing_timezone') }}
            as checkpoint_at
    from (
        select
            billing_periods.billing_period_id,
            billing_periods.billing_timezone,
            series.n as checkpoint_index,
            cast({{ dbt.dateadd('day', 'series.n', 'billing_periods.service_start_date') }} as date) as checkpoint_date
        from billing_periods
        cross join lateral {{ integer_series(dbt.datediff('billing_periods.service_start_date',
                                                          'billing_periods.service_last_date', 'day')) }} as series
        where series.n >= 1
    ) as checkpoint_days
),

open_checkpoints as (
    select checkpoints.*
    from checkpoints
    where checkpoints.checkpoint_at <= {{ as_of_timestamp() }}
),

-- Each event counts from the checkpoint that ends its local day.
line_events as (
    select
        itemised_events.invoice_line_id,
        itemised_events.event_id,
        itemised_events.event_at,
        itemised_events.units,
        itemised_events.unique_value,
        itemised_events.operation_type,
        {{ seconds_between('billing_periods.service_start_at', 'itemised_events.event_at') }}
            as seconds_from_start,
        {{ dbt.datediff('billing_periods.service_start_date', 'itemised_events.usage_date', 'day') }} + 1
            as checkpoint_index
    from itemised_events
    inner join lines
        on itemised_events.invoice_line_id = lines.invoice_line_id
    inner join billing_periods
        on lines.billing_period_id = billing_periods.billing_period_id
),

day_events as (
    select
        line_events.*,
        row_number() over (
            partition by line_events.invoice_line_id, line_events.checkpoint_index
            order by line_events.event_at desc, line_events.event_id desc
        ) as recency
    from line_events
),

event_daily as (
    select
        day_events.invoice_line_id,
        day_events.checkpoint_index,
        max(day_events.units) as max_value,
        max(case when day_events.recency = 1 then day_events.units end) as latest_value,
        sum(day_events.units * day_events.seconds_from_start) as unit_seconds
    from day_events
    group by 1, 2
),

counted_daily as (
    select
        line_event_counts.invoice_line_id,
        {{ dbt.datediff('billing_periods.service_start_date', 'line_event_counts.usage_date', 'day') }} + 1
            as checkpoint_index,
        sum(line_event_counts.event_count) as event_count,
        sum(line_event_counts.units) as units
    from line_event_counts
    inner join lines
        on line_event_counts.invoice_line_id = lines.invoice_line_id
    inner join billing_periods
        on lines.billing_period_id = billing_periods.billing_period_id
    group by 1, 2
),

daily as (
    select
        counted_daily.invoice_line_id,
        counted_daily.checkpoint_index,
        counted_daily.event_count,
        counted_daily.units,
        event_daily.max_value,
        event_daily.latest_value,
        event_daily.unit_seconds
    from counted_daily
    left join event_daily
        on counted_daily.invoice_line_id = event_daily.invoice_line_id
        and counted_daily.checkpoint_index = event_daily.checkpoint_index
),

-- Unique counts: each value counts from the day it was first added (when recurring: from the
-- day it became active in the period, the first day for values carried in).
first_additions as (
    select
        first_seen.invoice_line_id,
        first_seen.checkpoint_index,
        count(*) as added_value_count
    from (
        select line_events.invoice_line_id, line_events.unique_value, min(line_events.checkpoint_index) as checkpoint_index
        from line_events
        inner join lines
            on line_events.invoice_line_id = lines.invoice_line_id
        where line_events.operation_type = 'add'
            and not (lines.aggregation = 'unique_count' and lines.is_recurring)
        group by 1, 2

        union all

        select
            lines.invoice_line_id,
            unique_count_values.unique_value,
            {{ dbt.datediff('billing_periods.service_start_date',
                            'cast(' ~ from_utc('unique_count_values.first_active_at', 'billing_periods.billing_timezone') ~ ' as date)',
                            'day') }} + 1 as checkpoint_index
        from unique_count_values
        inner join lines
            on unique_count_values.billing_period_id = lines.billing_period_id
            and unique_count_values.charge_id = lines.charge_id
            and unique_count_values.group_key = coalesce(lines.group_key, '')
        inner join billing_periods
            on lines.billing_period_id = billing_periods.billing_period_id
    ) as first_seen
    group by 1, 2
),

-- Most lines have no usage at any checkpoint (at 5,000 customers, 92,000 of 118,000 lines and
-- 2.5M of their 3.2M checkpoints): their running totals are zero. The windows run over the
-- lines with usage only, narrow; every line's checkpoints take them afterwards.
active_lines as (
    select daily.invoice_line_id from daily
    union
    select first_additions.invoice_line_id from first_additions
),

running_totals as (
    select
        to_date_totals.*,
        latest.latest_value
    from (
        select
            lines.invoice_line_id,
            open_checkpoints.checkpoint_index,
            sum(daily.event_count) over to_date as event_count,
            sum(daily.units) over to_date as period_sum,
            sum(daily.unit_seconds) over to_date as unit_seconds,
            max(daily.max_value) over to_date as max_value,
            sum(first_additions.added_value_count) over to_date as added_value_count,
            max(case when daily.event_count > 0 then daily.checkpoint_index end) over to_date as latest_day
        from lines
        inner join active_lines
            on lines.invoice_line_id = active_lines.invoice_line_id
        inner join open_checkpoints
            on lines.billing_period_id = open_checkpoints.billing_period_id
        left join daily
            on lines.invoice_line_id = daily.invoice_line_id
            and open_checkpoints.checkpoint_index = daily.checkpoint_index
        left join first_additions
            on lines.invoice_line_id = first_additions.invoice_line_id
            and open_checkpoints.checkpoint_index = first_additions.checkpoint_index
        window to_date as (
            partition by lines.invoice_line_id
            order by open_checkpoints.checkpoint_index
            rows between unbounded preceding and current row
        )
    ) as to_date_totals
    left join daily as latest
        on to_date_totals.invoice_line_id = latest.invoice_line_id
        and to_date_totals.latest_day = latest.checkpoint_index
),

running as (
    select
        lines.*,
        open_checkpoints.checkpoint_index,
        open_checkpoints.checkpoint_at,
        coalesce(running_totals.event_count, 0) as event_count,
        coalesce(running_totals.period_sum, 0) as period_sum,
        coalesce(running_totals.unit_seconds, 0) as unit_seconds,
        {{ seconds_between('lines.service_start_at', 'open_checkpoints.checkpoint_at') }} as elapsed_seconds,
        coalesce(running_totals.max_value, 0) as max_value,
        coalesce(running_totals.added_value_count, 0) as added_value_count,
        running_totals.latest_value
    from lines
    inner join open_checkpoints
        on lines.billing_period_id = open_checkpoints.billing_period_id
    left join running_totals
        on lines.invoice_line_id = running_totals.invoice_line_id
        and open_checkpoints.checkpoint_index = running_totals.checkpoint_index
),

-- Every branch at the quantity scale before the metric's rounding, as int_charge_units (a
-- CASE would otherwise take one branch's scale for all on some engines).
aggregated as {{ materialized_cte() }} (
    select
        running.*,
        {{ rounded_units(
            "cast(case running.aggregation"
            ~ " when 'count' then running.event_count"
            ~ " when 'sum' then case when running.is_recurring then running.level_before + running.period_sum"
            ~ " else running.period_sum end"
            ~ " when 'max' then running.max_value"
            ~ " when 'latest' then case when running.latest_value > 0 then running.latest_value else 0 end"
            ~ " when 'unique_count' then running.added_value_count"
            ~ " when 'weighted_sum' then case when running.service_seconds > 0 then "
            ~ divide_exactly("case when running.is_recurring then running.level_before else 0 end"
                             ~ " * running.elapsed_seconds + running.period_sum * running.elapsed_seconds"
                             ~ " - running.unit_seconds", "running.service_seconds")
            ~ " else 0 end"
            ~ " end as " ~ quantity_type() ~ ")",
            'running.rounding_function', 'running.rounding_step') }} as units
    from running
),

-- Tiered charges: the units to date over the charge's tiers (percentage charges have none),
-- once per charge and quantity: most checkpoints repeat one (47,000 quantities for 3.2M
-- checkpoints at 5,000 customers).
rated as (
    select
        rating_inputs.charge_id,
        rating_inputs.units,
        sum({{ tier_amount('rating_inputs.charge_model',
                           tier_units('rating_inputs.charge_model', 'rating_inputs.units', 'rating_inputs.free_units', 'tiers'),
                           tier_is_reached('rating_inputs.charge_model', 'rating_inputs.units', 'tiers'),
                           'rating_inputs.package_size', 'tiers') }}) as amount_to_date
    from (
        select distinct
            aggregated.charge_id,
            aggregated.charge_model,
            aggregated.package_size,
            aggregated.free_units,
            aggregated.units
        from aggregated
    ) as rating_inputs
    inner join tiers
        on rating_inputs.charge_id = tiers.charge_id
    group by 1, 2
),

-- Percentage charges: the events priced in time order as the period's fee is
-- (macros/percentage.sql), and the line's arithmetic over the events before each checkpoint.
percentage_lines as (
    select lines.*
    from lines
    where lines.charge_model = 'percentage'
),

percentage_ordered as (
    {{ percentage_ordered_events('percentage_lines', 'line_events') }}
),

percentage_priced as (
    {{ percentage_priced_events('percentage_lines', 'percentage_ordered') }}
),

percentage_daily as (
    select
        percentage_priced.invoice_line_id,
        percentage_priced.checkpoint_index,
        sum(percentage_priced.event_value) as units,
        count(*) as event_count,
        max(case when percentage_priced.counts_for_free_units then percentage_priced.event_number end)
            as last_free_list_event,
        sum(case when percentage_priced.counts_for_free_units and percentage_priced.is_under_free_amount
            then 1 else 0 end) as events_under_free_amount,
        sum(percentage_priced.transaction_amount) as amount_per_transaction
    from percentage_priced
    group by 1, 2
),

percentage_running as (
    select
        percentage_lines.*,
        open_checkpoints.checkpoint_index,
        open_checkpoints.checkpoint_at,
        coalesce(sum(percentage_daily.units) over to_date, 0) as units_to_date,
        coalesce(sum(percentage_daily.event_count) over to_date, 0) as event_count_to_date,
        max(percentage_daily.last_free_list_event) over to_date as last_free_list_event,
        coalesce(sum(percentage_daily.events_under_free_amount) over to_date, 0) as events_under_free_amount,
        coalesce(sum(percentage_daily.amount_per_transaction) over to_date, 0) as amount_per_transaction
    from percentage_lines
    inner join open_checkpoints
        on percentage_lines.billing_period_id = open_checkpoints.billing_period_id
    left join percentage_daily
        on percentage_lines.invoice_line_id = percentage_daily.invoice_line_id
        and open_checkpoints.checkpoint_index = percentage_daily.checkpoint_index
    window to_date as (
        partition by percentage_lines.invoice_line_id
        order by open_checkpoints.checkpoint_index
        rows between unbounded preceding and current row
    )
),

percentage_free as (
    select
        percentage_running.*,
        {{ percentage_free_units('free_list.running_total', 'percentage_running.free_amount_limit') }} as free_units_to_date,
        {{ percentage_free_events('percentage_running.free_events_limit', 'percentage_running.events_under_free_amount') }}
            as free_events_to_date
    from percentage_running
    left join percentage_priced as free_list
        on percentage_running.invoice_line_id = free_list.invoice_line_id
        and percentage_running.last_free_list_event = free_list.event_number
),

percentage_rated as (
    select
        percentage_free.invoice_line_id,
        percentage_free.billing_period_id,
        percentage_free.charge_id,
        percentage_free.checkpoint_index,
        percentage_free.checkpoint_at,
        percentage_free.event_count_to_date,
        percentage_free.units_to_date,
        {{ percentage_line_amount(
            '(percentage_free.per_transaction_min_amount is not null'
            ' or percentage_free.per_transaction_max_amount is not null)',
            'percentage_free.amount_per_transaction',
            percentage_rate_amount('percentage_free.units_to_date', 'percentage_free.free_units_to_date',
                                   'percentage_free.rate'),
            percentage_fixed_fee_amount('percentage_free.units_to_date', 'percentage_free.fixed_amount',
                                        'percentage_free.event_count_to_date', 'percentage_free.free_events_to_date')
        ) }} as amount_to_date
    from percentage_free
),

final as (
    select
        aggregated.invoice_line_id,
        aggregated.billing_period_id,
        aggregated.charge_id,
        aggregated.checkpoint_index,
        aggregated.checkpoint_at,
        cast(aggregated.event_count as bigint) as event_count_to_date,
        aggregated.units as units_to_date,
        {{ to_precise_money('rated.amount_to_date') }} as precise_amount_to_date
    from aggregated
    inner join rated
        on aggregated.charge_id = rated.charge_id
        and aggregated.units = rated.units

    union all

    select
        percentage_rated.invoice_line_id,
        percentage_rated.billing_period_id,
        percentage_rated.charge_id,
        percentage_rated.checkpoint_index,
        percentage_rated.checkpoint_at,
        cast(percentage_rated.event_count_to_date as bigint),
        cast(percentage_rated.units_to_date as {{ quantity_type() }}),
        percentage_rated.amount_to_date
    from percentage_rated
)

select * from final
