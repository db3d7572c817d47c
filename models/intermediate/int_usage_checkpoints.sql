-- One row per charge line of a plan with usage thresholds and checkpoint: the line's usage to
-- date and what it costs (progressive billing, docs/invoice-amounts.md).
--
-- Checkpoints are the customer's local midnights strictly inside a billing period's service,
-- up to the run's as_of: checkpoint k is the start of local day service_start_date + k, and
-- counts the events of the local days before it. The usage to date is the metric's aggregation
-- over those events: count, sum (from the level carried in when recurring), max, latest,
-- unique count (of values added; when recurring, of values active since the period's start),
-- and a weighted sum's level x time accrued up to the checkpoint over the whole period's time
-- (the period's amount if usage stopped there). It is rounded as the metric rounds and priced
-- over the charge's tiers exactly as the period's fee is (macros/pricing.sql). The catalog
-- refuses thresholds on plans with percentage charges (their free events and amounts are the
-- period's); in-advance charges are invoiced as their events come and are not part of it.
with thresholds as (
    select * from {{ ref('stg_catalog__usage_thresholds') }}
),

billing_periods as (
    select * from {{ ref('int_billing_periods') }}
    where plan_code in (select thresholds.plan_code from thresholds)
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

matched_events as (
    select * from {{ ref('int_events_matched') }}
    where invoice_line_id is not null
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
        {{ dbt.datediff('billing_periods.service_start_at', 'billing_periods.service_end_at', 'second') }}
            as service_seconds,
        charges.aggregation,
        charges.is_recurring,
        charges.rounding_function,
        charges.rounding_step,
        charges.charge_model,
        charges.package_size,
        charges.free_units
    from charge_units
    inner join billing_periods
        on charge_units.billing_period_id = billing_periods.billing_period_id
    inner join charges
        on charge_units.charge_id = charges.charge_id
    where charges.charge_model <> 'percentage'
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
        matched_events.invoice_line_id,
        matched_events.event_id,
        matched_events.event_at,
        matched_events.units,
        matched_events.unique_value,
        matched_events.operation_type,
        {{ dbt.datediff('billing_periods.service_start_at', 'matched_events.event_at', 'second') }}
            as seconds_from_start,
        {{ dbt.datediff('billing_periods.service_start_date',
                        'cast(' ~ from_utc('matched_events.event_at', 'billing_periods.billing_timezone') ~ ' as date)',
                        'day') }} + 1 as checkpoint_index
    from matched_events
    inner join lines
        on matched_events.invoice_line_id = lines.invoice_line_id
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

daily as (
    select
        day_events.invoice_line_id,
        day_events.checkpoint_index,
        count(*) as event_count,
        sum(day_events.units) as units,
        max(day_events.units) as max_value,
        max(case when day_events.recency = 1 then day_events.units end) as latest_value,
        sum(day_events.units * day_events.seconds_from_start) as unit_seconds
    from day_events
    group by 1, 2
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

running as (
    select
        lines.*,
        open_checkpoints.checkpoint_index,
        open_checkpoints.checkpoint_at,
        coalesce(sum(daily.event_count) over to_date, 0) as event_count,
        coalesce(sum(daily.units) over to_date, 0) as period_sum,
        coalesce(sum(daily.unit_seconds) over to_date, 0) as unit_seconds,
        {{ dbt.datediff('lines.service_start_at', 'open_checkpoints.checkpoint_at', 'second') }} as elapsed_seconds,
        coalesce(max(daily.max_value) over to_date, 0) as max_value,
        coalesce(sum(first_additions.added_value_count) over to_date, 0) as added_value_count,
        max(case when daily.event_count > 0 then daily.checkpoint_index end) over to_date as latest_day
    from lines
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
),

aggregated as (
    select
        running.*,
        {{ rounded_units(
            "case running.aggregation"
            ~ " when 'count' then running.event_count"
            ~ " when 'sum' then case when running.is_recurring then running.level_before + running.period_sum"
            ~ " else running.period_sum end"
            ~ " when 'max' then running.max_value"
            ~ " when 'latest' then case when latest.latest_value > 0 then latest.latest_value else 0 end"
            ~ " when 'unique_count' then running.added_value_count"
            ~ " when 'weighted_sum' then case when running.service_seconds > 0 then "
            ~ divide_exactly("case when running.is_recurring then running.level_before else 0 end"
                             ~ " * running.elapsed_seconds + running.period_sum * running.elapsed_seconds"
                             ~ " - running.unit_seconds", "running.service_seconds")
            ~ " else 0 end"
            ~ " end",
            'running.rounding_function', 'running.rounding_step') }} as units
    from running
    left join daily as latest
        on running.invoice_line_id = latest.invoice_line_id
        and running.latest_day = latest.checkpoint_index
),

rated as (
    select
        aggregated.invoice_line_id,
        aggregated.checkpoint_index,
        sum({{ tier_amount('aggregated.charge_model',
                           tier_units('aggregated.charge_model', 'aggregated.units', 'aggregated.free_units', 'tiers'),
                           tier_is_reached('aggregated.charge_model', 'aggregated.units', 'tiers'),
                           'aggregated.package_size', 'tiers') }}) as amount_to_date
    from aggregated
    inner join tiers
        on aggregated.charge_id = tiers.charge_id
    group by 1, 2
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
        on aggregated.invoice_line_id = rated.invoice_line_id
        and aggregated.checkpoint_index = rated.checkpoint_index
)

select * from final
