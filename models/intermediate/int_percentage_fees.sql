-- One row per percentage charge fee (a line of int_charge_units): rate % of the
-- summed amount, plus a fixed fee per paying event, after free units, with optional per-
-- transaction minimum and maximum. The established engine's rules (docs/charge-models.md):
-- - free units: the first `free_units_per_events` events, or the amount up to
--   `free_units_per_total_aggregation`, whichever is reached first;
-- - events free of the fixed fee: the smaller non-zero of `free_units_per_events` and the
--   number of events whose running total stays under the free amount;
-- - with a per-transaction minimum or maximum, each event is priced on its own (what is left of
--   the free amount comes off the event that exhausts it) and clamped.
-- Events are taken in time order (event_at, then event_id) for the running totals.
with charge_units as (
    select * from {{ ref('int_charge_units') }}
),

charges as (
    select * from {{ ref('stg_catalog__charges') }}
    where charge_model = 'percentage'
),

matched_events as (
    select * from {{ ref('int_events_matched') }}
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
    select
        charge_fees.invoice_line_id,
        matched_events.units as event_value,
        row_number() over (
            partition by charge_fees.invoice_line_id
            order by matched_events.event_at, matched_events.event_id
        ) as event_number,
        sum(matched_events.units) over (
            partition by charge_fees.invoice_line_id
            order by matched_events.event_at, matched_events.event_id
            rows between unbounded preceding and current row
        ) as running_total
    from matched_events
    inner join charge_fees
        on matched_events.invoice_line_id = charge_fees.invoice_line_id
),

priced_events as (
    select
        ordered_events.*,
        ordered_events.running_total - ordered_events.event_value as running_before,
        -- The running totals that decide the free units: the first N events when a number of
        -- free events is set, else the events while the total before them is within the free amount.
        case
            when charge_fees.free_events_limit > 0 then ordered_events.event_number <= charge_fees.free_events_limit
            when charge_fees.free_amount_limit > 0
                then ordered_events.running_total - ordered_events.event_value <= charge_fees.free_amount_limit
            else false
        end as counts_for_free_units,
        -- The event's own amount, used when a per-transaction minimum or maximum is set.
        case
            when charge_fees.free_amount_limit > 0 and ordered_events.running_total < charge_fees.free_amount_limit
                then null
            when charge_fees.free_amount_limit > 0
                and ordered_events.running_total - ordered_events.event_value < charge_fees.free_amount_limit
                then (ordered_events.running_total - charge_fees.free_amount_limit) * charge_fees.rate * 0.01
                    + coalesce(charge_fees.fixed_amount, 0)
            when charge_fees.free_amount_limit = 0 and ordered_events.event_number <= charge_fees.free_events_limit
                then null
            else ordered_events.event_value * charge_fees.rate * 0.01 + coalesce(charge_fees.fixed_amount, 0)
        end as unclamped_transaction_amount
    from ordered_events
    inner join charge_fees
        on ordered_events.invoice_line_id = charge_fees.invoice_line_id
),

clamped_events as (
    select
        priced_events.*,
        -- Every branch keeps 18 decimals: a CASE takes one branch's type, and the limits' 12
        -- decimals would round each event before the sum (the line is rounded once, later).
        case
            when priced_events.unclamped_transaction_amount is null then cast(0 as decimal(38, 18))
            when charge_fees.per_transaction_min_amount is not null
                and priced_events.unclamped_transaction_amount < charge_fees.per_transaction_min_amount
                then cast(charge_fees.per_transaction_min_amount as decimal(38, 18))
            when charge_fees.per_transaction_max_amount is not null
                and priced_events.unclamped_transaction_amount > charge_fees.per_transaction_max_amount
                then cast(charge_fees.per_transaction_max_amount as decimal(38, 18))
            else cast(priced_events.unclamped_transaction_amount as decimal(38, 18))
        end as transaction_amount
    from priced_events
    inner join charge_fees
        on priced_events.invoice_line_id = charge_fees.invoice_line_id
),

line_events as (
    select
        clamped_events.invoice_line_id,
        sum(clamped_events.event_value) as units,
        count(*) as event_count,
        max(case when clamped_events.counts_for_free_units then clamped_events.event_number end)
            as last_free_list_event,
        sum(case when clamped_events.counts_for_free_units
            and clamped_events.running_total < charge_fees.free_amount_limit then 1 else 0 end)
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
        -- Branches cast to money precision: the free amount may have 12 decimals, the running
        -- totals 9, and a CASE would otherwise take the narrower type.
        case
            when coalesce(free_list_totals.last_free_list_total, 0) = 0 then {{ to_precise_money('0') }}
            when charge_fees.free_amount_limit = 0 then {{ to_precise_money('free_list_totals.last_free_list_total') }}
            when free_list_totals.last_free_list_total <= charge_fees.free_amount_limit
                then {{ to_precise_money('free_list_totals.last_free_list_total') }}
            else {{ to_precise_money('charge_fees.free_amount_limit') }}
        end as free_units,
        -- The smaller of the two limits that are not zero.
        case
            when charge_fees.free_events_limit > 0 and coalesce(line_events.events_under_free_amount, 0) > 0
                then least(charge_fees.free_events_limit, line_events.events_under_free_amount)
            when charge_fees.free_events_limit > 0 then charge_fees.free_events_limit
            else coalesce(line_events.events_under_free_amount, 0)
        end as free_events
    from charge_fees
    left join line_events
        on charge_fees.invoice_line_id = line_events.invoice_line_id
    left join free_list_totals
        on charge_fees.invoice_line_id = free_list_totals.invoice_line_id
),

amounts as (
    select
        free_units.*,
        case when free_units.free_units > free_units.units then 0
            else (free_units.units - free_units.free_units) * free_units.rate * 0.01
        end as percentage_amount,
        case
            when free_units.units = 0 or free_units.fixed_amount is null then 0
            when free_units.free_events >= free_units.event_count then 0
            else (free_units.event_count - free_units.free_events) * free_units.fixed_amount
        end as fixed_fee_amount
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
        {{ to_precise_money(
            "case when amounts.per_transaction_min_amount is not null or amounts.per_transaction_max_amount is not null"
            ~ " then amounts.amount_per_transaction"
            ~ " else amounts.percentage_amount + amounts.fixed_fee_amount end") }} as precise_amount
    from amounts
)

select * from final
