-- One row per item of revenue (int_revenue_items) and day (in the customer's time zone) on
-- which some of it is recognised: the whole schedule, so the days after the run's as_of are
-- `scheduled` (an in-advance yearly fee's coming months) and the others `recognised`.
-- Each day takes the difference of the amount recognised to date, rounded once with
-- round_money: a schedule's days add up to its item's amount exactly, in whole minor units.
-- Each row carries its own share before the day (the previous day's share to date, computed
-- from the same row), so no window has to order millions of schedule rows to find it.
-- - ratably: day k of n (inclusive service dates) recognises amount x k / n to date;
-- - consumption: to date, amount x the line's events up to that day / all its events (counted
--   by the metering per line, day and load, placed on what bills them as the lineage bridge
--   places them); ratably over its service days without events;
-- - point_in_time: the whole amount on its day.
-- An item of zero (a usage line without usage, most of them) has nothing to recognise and no
-- schedule: at 5,000 customers such items would be 88% of the rows, all of them zero.
with items as (
    select * from {{ ref('int_revenue_items') }}
    where amount <> 0
),

line_events as (
    select
        placements.invoice_line_id,
        counts.usage_date,
        counts.event_count
    from {{ ref('int_line_event_counts') }} as counts
    inner join {{ ref('int_line_event_placements') }} as placements
        on counts.invoice_line_id = placements.rated_on_invoice_line_id
        and counts.loaded_at = placements.loaded_at
),

currencies as (
    select * from {{ ref('currencies') }}
),

consumption_items as (
    select * from items
    where recognition = 'consumption'
),

events_per_day as (
    select
        consumption_items.revenue_item_id,
        line_events.usage_date as recognised_on,
        sum(line_events.event_count) as event_count
    from line_events
    inner join consumption_items
        on line_events.invoice_line_id = consumption_items.invoice_line_id
    group by 1, 2
),

consumed_to_date as (
    select
        events_per_day.revenue_item_id,
        events_per_day.recognised_on,
        events_per_day.event_count,
        sum(events_per_day.event_count) over (
            partition by events_per_day.revenue_item_id order by events_per_day.recognised_on
            rows between unbounded preceding and current row
        ) as events_to_date,
        sum(events_per_day.event_count) over (partition by events_per_day.revenue_item_id) as events_total
    from events_per_day
),

items_with_events as (
    select distinct revenue_item_id from events_per_day
),

ratable_items as (
    select
        items.*,
        cast({{ dbt.datediff('items.recognition_start', 'items.recognition_end', 'day') }} as integer) + 1
            as days_in_service
    from items
    left join items_with_events
        on items.revenue_item_id = items_with_events.revenue_item_id
    where items.recognition = 'ratably'
        or (items.recognition = 'consumption' and items_with_events.revenue_item_id is null)
),

ratable_days as (
    select
        ratable_items.revenue_item_id,
        cast({{ dbt.dateadd('day', 'series.n', 'ratable_items.recognition_start') }} as date) as recognised_on,
        {{ day_share('series.n + 1', 'ratable_items.days_in_service') }} as share_to_date,
        {{ day_share('series.n', 'ratable_items.days_in_service') }} as share_before
    from ratable_items
    cross join lateral {{ integer_series('ratable_items.days_in_service - 1') }} as series
    where ratable_items.days_in_service >= 1
),

shares_to_date as (
    select
        consumed_to_date.revenue_item_id,
        consumed_to_date.recognised_on,
        {{ exact_ratio('consumed_to_date.events_to_date', 'consumed_to_date.events_total') }} as share_to_date,
        {{ exact_ratio('consumed_to_date.events_to_date - consumed_to_date.event_count',
                       'consumed_to_date.events_total') }} as share_before
    from consumed_to_date
    union all
    select * from ratable_days
    union all
    -- A point in time, or a service period that ends before it starts (one day, all of it).
    select
        items.revenue_item_id,
        items.recognition_start as recognised_on,
        cast(1 as {{ precise_money_type() }}) as share_to_date,
        cast(0 as {{ precise_money_type() }}) as share_before
    from items
    left join ratable_items
        on items.revenue_item_id = ratable_items.revenue_item_id
    where items.recognition = 'point_in_time'
        or (ratable_items.days_in_service is not null and ratable_items.days_in_service < 1)
),

amounts_to_date as (
    select
        items.revenue_item_id,
        shares_to_date.recognised_on,
        {{ round_money('items.amount * shares_to_date.share_to_date', 'currencies.minor_unit') }}
            as amount_to_date,
        {{ round_money('items.amount * shares_to_date.share_before', 'currencies.minor_unit') }}
            as amount_before
    from shares_to_date
    inner join items
        on shares_to_date.revenue_item_id = items.revenue_item_id
    inner join currencies
        on items.currency = currencies.currency_code
),

final as (
    select
        {{ dbt.hash("items.revenue_item_id || '|' || cast(amounts_to_date.recognised_on as " ~ dbt.type_string() ~ ")") }}
            as revenue_recognition_id,
        items.revenue_item_id,
        items.source_kind,
        items.revenue_stream,
        items.customer_id,
        items.currency,
        items.plan_code,
        items.metric_code,
        items.document_id,
        items.document_number,
        items.invoice_line_id,
        amounts_to_date.recognised_on,
        case when amounts_to_date.recognised_on <= cast({{ as_of_timestamp() }} as date) then 'recognised'
            else 'scheduled' end as status,
        cast(amounts_to_date.amount_to_date - amounts_to_date.amount_before as {{ rounded_money_type() }})
            as amount
    from amounts_to_date
    inner join items
        on amounts_to_date.revenue_item_id = items.revenue_item_id
)

select * from final
