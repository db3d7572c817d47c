-- One row per percentage charge fee (a line of int_charge_units): rate % of the
-- summed amount, plus a fixed fee per paying event, after free units, with optional per-
-- transaction minimum and maximum. The established engine's rules (docs/charge-models.md):
-- - free units: the first `free_units_per_events` events, or the amount up to
--   `free_units_per_total_aggregation`, whichever is reached first;
-- - events free of the fixed fee: the smaller non-zero of `free_units_per_events` and the
--   number of events whose running total stays under the free amount;
-- - with a per-transaction minimum or maximum, each event is priced on its own (what is left of
--   the free amount comes off the event that exhausts it) and clamped.
-- Events are taken in time order (event_at, then event_id) for the running totals
-- (macros/percentage.sql, shared with progressive billing's usage to date).
with charge_units as (
    select * from {{ ref('int_charge_units') }}
),

charges as (
    select * from {{ ref('stg_catalog__charges') }}
    where charge_model = 'percentage'
),

matched_events as (
    select * from {{ ref('int_events_itemised') }}
    where invoice_line_id is not null
),

charge_fees as (
    select
        charge_units.invoice_line_id,
        charge_units.billing_period_id,
        charges.charge_id,
        charges.rate,
        charges.fixed_amount,
        coalesce(charges.free_units_per_events, 0) as free_events_limit,
        coalesce(charges.free_units_per_total_aggregation, 0) as free_amount_limit,
        charges.per_transaction_min_amount,
        charges.per_transaction_max_amount
    from charge_units
    inner join charges
        on charge_units.charge_id = charges.charge_id
),

ordered_events as (
    {{ percentage_ordered_events('charge_fees', 'matched_events') }}
),

clamped_events as (
    {{ percentage_priced_events('charge_fees', 'ordered_events') }}
),

line_events as (
    select
        clamped_events.invoice_line_id,
        sum(clamped_events.event_value) as units,
        count(*) as event_count,
        max(case when clamped_events.counts_for_free_units then clamped_events.event_number end)
            as last_free_list_event,
        sum(case when clamped_events.counts_for_free_units and clamped_events.is_under_free_amount then 1 else 0 end)
            as events_under_free_amount,
        sum(clamped_events.transaction_amount) as amount_per_transaction
    from clamped_events
    inner join charge_fees
        on clamped_events.invoice_line_id = charge_fees.invoice_line_id
    group by 1
),

free_list_totals as (
    select
        line_events.invoice_line_id,
        clamped_events.running_total as last_free_list_total
    from line_events
    inner join clamped_events
        on line_events.invoice_line_id = clamped_events.invoice_line_id
        and line_events.last_free_list_event = clamped_events.event_number
),

free_units as (
    select
        charge_fees.*,
        coalesce(line_events.units, 0) as units,
        coalesce(line_events.event_count, 0) as event_count,
        coalesce(line_events.amount_per_transaction, 0) as amount_per_transaction,
        {{ percentage_free_units('free_list_totals.last_free_list_total', 'charge_fees.free_amount_limit') }}
            as free_units,
        {{ percentage_free_events('charge_fees.free_events_limit', 'line_events.events_under_free_amount') }}
            as free_events
    from charge_fees
    left join line_events
        on charge_fees.invoice_line_id = line_events.invoice_line_id
    left join free_list_totals
        on charge_fees.invoice_line_id = free_list_totals.invoice_line_id
),

amounts as (
    select
        free_units.*,
        {{ percentage_rate_amount('free_units.units', 'free_units.free_units', 'free_units.rate') }}
            as percentage_amount,
        {{ percentage_fixed_fee_amount('free_units.units', 'free_units.fixed_amount', 'free_units.event_count',
                                       'free_units.free_events') }} as fixed_fee_amount
    from free_units
),

final as (
    select
        amounts.invoice_line_id,
        amounts.billing_period_id,
        amounts.charge_id,
        cast(amounts.units as {{ quantity_type() }}) as units,
        cast(amounts.event_count as bigint) as event_count,
        {{ to_precise_money('amounts.free_units') }} as free_units,
        cast(amounts.free_events as bigint) as free_events,
        {{ to_precise_money('amounts.percentage_amount') }} as percentage_amount,
        {{ to_precise_money('amounts.fixed_fee_amount') }} as fixed_fee_amount,
        (amounts.per_transaction_min_amount is not null or amounts.per_transaction_max_amount is not null)
            as has_transaction_limits,
        {{ percentage_line_amount('(amounts.per_transaction_min_amount is not null'
                                  ' or amounts.per_transaction_max_amount is not null)',
                                  'amounts.amount_per_transaction', 'amounts.percentage_amount',
                                  'amounts.fixed_fee_amount') }} as precise_amount
    from amounts
)

select * from final
