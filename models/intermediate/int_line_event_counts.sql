-- One row per invoice line, local day of its events (usage_date, in the customer's time zone)
-- and load (loaded_at): how many of its events (duplicates not counted) and the sum of their
-- units. The metering increments added up, with the lines of charges paid in advance (an event
-- each, int_events_itemised). Late-event corrections count the events loaded after an
-- invoice's cut-off here, revenue recognition the events of each day, progressive billing the
-- usage before each local midnight, and the reconciliation where events are billed.
with increments as (
    select * from {{ ref('int_usage_increments') }}
    where invoice_line_id is not null
),

in_advance as (
    select * from {{ ref('int_events_itemised') }}
    where invoice_line_id is not null and is_pay_in_advance
),

final as (
    select
        increments.invoice_line_id,
        increments.billing_period_id,
        increments.charge_id,
        increments.usage_date,
        increments.loaded_at,
        cast(sum(increments.event_count) as bigint) as event_count,
        cast(sum(increments.units) as {{ quantity_type() }}) as units
    from increments
    group by 1, 2, 3, 4, 5
    having sum(increments.event_count) <> 0

    union all

    select
        in_advance.invoice_line_id,
        in_advance.billing_period_id,
        in_advance.charge_id,
        in_advance.usage_date,
        in_advance.loaded_at,
        cast(count(*) as bigint) as event_count,
        cast(sum(in_advance.units) as {{ quantity_type() }}) as units
    from in_advance
    group by 1, 2, 3, 4, 5
)

select * from final
