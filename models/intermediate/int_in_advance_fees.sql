-- One row per event of a charge billed in advance: its own invoice line, invoiced when the
-- event happens, for what it adds to the period's amount (docs/charge-models.md).
-- The period's level after each event is the running sum (count: events; unique_count: the
-- values added so far); the event pays F(peak after it) - F(peak before it), where F is the
-- charge model's amount and the peak the highest level reached in the period, so a level
-- that falls never refunds and the fees of non-decreasing usage add up to the amount the
-- period would be billed in arrears. Before the first event nothing is owed (F(0) = 0): the
-- first tier's flat amount is paid with the first event.
with matched_events as (
    select * from {{ ref('int_events_itemised') }}
    where invoice_line_id is not null
),

charges as (
    select * from {{ ref('stg_catalog__charges') }}
    where is_pay_in_advance
),

tiers as (
    select * from {{ ref('stg_catalog__charge_tiers') }}
),

advance_events as (
    select
        matched_events.invoice_line_id,
        matched_events.event_id,
        matched_events.event_at,
        matched_events.billing_period_id,
        matched_events.charge_id,
        coalesce(matched_events.group_key, '') as series_group,
        matched_events.group_key,
        matched_events.units,
        matched_events.unique_value,
        matched_events.operation_type,
        charges.aggregation,
        -- A unique count grows by the first add of each value in the period.
        case
            when charges.aggregation <> 'unique_count' then matched_events.units
            when matched_events.operation_type = 'add'
                and row_number() over (
                    partition by matched_events.billing_period_id, matched_events.charge_id,
                        coalesce(matched_events.group_key, ''), matched_events.unique_value,
                        matched_events.operation_type
                    order by matched_events.event_at, matched_events.event_id
                ) = 1
                then cast(1 as {{ quantity_type() }})
            else cast(0 as {{ quantity_type() }})
        end as level_change
    from matched_events
    inner join charges
        on matched_events.charge_id = charges.charge_id
),

levels as (
    select
        advance_events.*,
        sum(advance_events.level_change) over (
            partition by advance_events.billing_period_id, advance_events.charge_id, advance_events.series_group
            order by advance_events.event_at, advance_events.event_id
            rows between unbounded preceding and current row
        ) as level_after
    from advance_events
),

peaks as (
    select
        levels.*,
        max(levels.level_after) over (
            partition by levels.billing_period_id, levels.charge_id, levels.series_group
            order by levels.event_at, levels.event_id
            rows between unbounded preceding and current row
        ) as running_peak,
        max(levels.level_after) over (
            partition by levels.billing_period_id, levels.charge_id, levels.series_group
            order by levels.event_at, levels.event_id
            rows between unbounded preceding and 1 preceding
        ) as previous_running_peak
    from levels
),

bounded as (
    select
        peaks.*,
        cast(case when peaks.running_peak > 0 then peaks.running_peak else 0 end as {{ quantity_type() }})
            as peak_after,
        cast(case when peaks.previous_running_peak > 0 then peaks.previous_running_peak else 0 end
            as {{ quantity_type() }}) as peak_before
    from peaks
),

tier_deltas as (
    select
        bounded.event_id,
        -- F at the peak after the event, less F at the peak before it (nothing before the first).
        -- Each tier amount is rounded to 12 decimals first, as arrears rating does, so every engine
        -- subtracts the same numbers and the fees of growing usage add up to the arrears amount.
        {{ to_precise_money(tier_amount_at('bounded.peak_after', 'charges', 'tiers')) }}
        - case when bounded.previous_running_peak is null then 0
            else {{ to_precise_money(tier_amount_at('bounded.peak_before', 'charges', 'tiers')) }} end as tier_delta
    from bounded
    inner join charges
        on bounded.charge_id = charges.charge_id
    inner join tiers
        on bounded.charge_id = tiers.charge_id
),

final as (
    select
        bounded.invoice_line_id,
        bounded.event_id,
        bounded.event_at,
        bounded.billing_period_id,
        bounded.charge_id,
        bounded.group_key,
        bounded.units,
        bounded.level_after,
        bounded.peak_before,
        bounded.peak_after,
        {{ to_precise_money('sum(tier_deltas.tier_delta)') }} as precise_amount
    from bounded
    inner join tier_deltas
        on bounded.event_id = tier_deltas.event_id
    group by 1, 2, 3, 4, 5, 6, 7, 8, 9, 10
)

select * from final
