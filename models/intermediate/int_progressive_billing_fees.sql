-- One row per line of a progressive billing invoice (docs/invoice-amounts.md): when a billing
-- period's usage to date (the sum of its charges' amounts at a checkpoint, int_usage_checkpoints)
-- reaches a threshold it had not reached, an invoice is issued at that checkpoint for the usage
-- so far, on an invoice of its own. The columns of int_fees, and the period line that deducts it.
--
-- Thresholds: a plan's fixed amounts, and at most one recurring step that fires every step
-- beyond the largest fixed one (or from zero without fixed ones). Reaching several at once
-- issues one invoice. A threshold counts once per period, even if usage drops below it again.
--
-- Each line bills the charge's usage to date, rounded (nothing while it is below zero), minus
-- what earlier progressive invoices of the period billed for it, never less than that: the
-- lines of a charge add up to the largest of its rounded amounts at the progressive invoices,
-- and the period-end invoice deducts exactly that (int_invoice_fees).
with checkpoints as (
    select * from {{ ref('int_usage_checkpoints') }}
),

thresholds as (
    select * from {{ ref('stg_catalog__usage_thresholds') }}
),

billing_periods as (
    select * from {{ ref('int_billing_periods') }}
),

charge_units as (
    select * from {{ ref('int_charge_units') }}
),

charges as (
    select * from {{ ref('stg_catalog__charges') }}
),

plan_thresholds as (
    select
        thresholds.plan_code,
        coalesce(max(case when not thresholds.is_recurring then thresholds.threshold_amount end), 0)
            as largest_fixed_amount,
        max(case when thresholds.is_recurring then thresholds.threshold_amount end) as recurring_amount
    from thresholds
    group by 1
),

period_usage as (
    select
        checkpoints.billing_period_id,
        checkpoints.checkpoint_index,
        checkpoints.checkpoint_at,
        billing_periods.plan_code,
        sum(checkpoints.precise_amount_to_date) as usage_amount
    from checkpoints
    inner join billing_periods
        on checkpoints.billing_period_id = billing_periods.billing_period_id
    group by 1, 2, 3, 4
),

fixed_reached as (
    select
        period_usage.billing_period_id,
        period_usage.checkpoint_index,
        count(*) as reached_count
    from period_usage
    inner join thresholds
        on period_usage.plan_code = thresholds.plan_code
        and not thresholds.is_recurring
        and thresholds.threshold_amount <= period_usage.usage_amount
    group by 1, 2
),

-- Recurring steps reached: floor((usage - largest fixed) / step), exactly (the quotient is
-- rounded to 12 decimals, then corrected against the product).
recurring_estimate as (
    select
        period_usage.billing_period_id,
        period_usage.checkpoint_index,
        plan_thresholds.largest_fixed_amount,
        plan_thresholds.recurring_amount,
        period_usage.usage_amount,
        case when plan_thresholds.recurring_amount is not null
                and period_usage.usage_amount >= plan_thresholds.largest_fixed_amount + plan_thresholds.recurring_amount
            then floor({{ exact_ratio('period_usage.usage_amount - plan_thresholds.largest_fixed_amount',
                                      'plan_thresholds.recurring_amount') }})
            else 0
        end as step_count
    from period_usage
    inner join plan_thresholds
        on period_usage.plan_code = plan_thresholds.plan_code
),

crossings as (
    select
        period_usage.billing_period_id,
        period_usage.checkpoint_index,
        period_usage.checkpoint_at,
        period_usage.usage_amount,
        coalesce(fixed_reached.reached_count, 0)
        + case
            when recurring_estimate.step_count > 0
                and recurring_estimate.largest_fixed_amount + recurring_estimate.step_count * recurring_estimate.recurring_amount
                    > recurring_estimate.usage_amount
                then recurring_estimate.step_count - 1
            else recurring_estimate.step_count
        end as thresholds_reached
    from period_usage
    inner join recurring_estimate
        on period_usage.billing_period_id = recurring_estimate.billing_period_id
        and period_usage.checkpoint_index = recurring_estimate.checkpoint_index
    left join fixed_reached
        on period_usage.billing_period_id = fixed_reached.billing_period_id
        and period_usage.checkpoint_index = fixed_reached.checkpoint_index
),

highest_so_far as (
    select
        crossings.*,
        max(crossings.thresholds_reached) over (
            partition by crossings.billing_period_id
            order by crossings.checkpoint_index
            rows between unbounded preceding and current row
        ) as reached_to_date
    from crossings
),

issuing_checkpoints as (
    select
        highest_so_far.billing_period_id,
        highest_so_far.checkpoint_index,
        highest_so_far.checkpoint_at,
        highest_so_far.usage_amount,
        highest_so_far.reached_to_date as thresholds_reached
    from (
        select
            highest_so_far.*,
            coalesce(lag(highest_so_far.reached_to_date) over (
                partition by highest_so_far.billing_period_id
                order by highest_so_far.checkpoint_index
            ), 0) as reached_before
        from highest_so_far
    ) as highest_so_far
    where highest_so_far.reached_to_date > highest_so_far.reached_before
),

line_billed as (
    select
        checkpoints.invoice_line_id,
        checkpoints.billing_period_id,
        checkpoints.charge_id,
        issuing_checkpoints.checkpoint_index,
        issuing_checkpoints.checkpoint_at,
        checkpoints.units_to_date,
        checkpoints.event_count_to_date,
        max(case when checkpoints.precise_amount_to_date > 0
            then {{ round_money('checkpoints.precise_amount_to_date', 'billing_periods.minor_unit') }}
            else 0 end) over (
            partition by checkpoints.invoice_line_id
            order by issuing_checkpoints.checkpoint_index
            rows between unbounded preceding and current row
        ) as billed_to_date
    from checkpoints
    inner join issuing_checkpoints
        on checkpoints.billing_period_id = issuing_checkpoints.billing_period_id
        and checkpoints.checkpoint_index = issuing_checkpoints.checkpoint_index
    inner join billing_periods
        on checkpoints.billing_period_id = billing_periods.billing_period_id
),

line_increments as (
    select
        line_billed.*,
        line_billed.billed_to_date - coalesce(lag(line_billed.billed_to_date) over (
            partition by line_billed.invoice_line_id order by line_billed.checkpoint_index
        ), 0) as billed_amount,
        line_billed.units_to_date - coalesce(lag(line_billed.units_to_date) over (
            partition by line_billed.invoice_line_id order by line_billed.checkpoint_index
        ), 0) as units_increase,
        line_billed.event_count_to_date - coalesce(lag(line_billed.event_count_to_date) over (
            partition by line_billed.invoice_line_id order by line_billed.checkpoint_index
        ), 0) as event_increase
    from line_billed
),

final as (
    select
        {{ dbt.hash("'progressive|' || line_increments.invoice_line_id || '|' || cast(line_increments.checkpoint_index as "
                    ~ dbt.type_string() ~ ")") }} as invoice_line_id,
        {{ dbt.hash("'progressive|' || line_increments.billing_period_id || '|' || cast(line_increments.checkpoint_index as "
                    ~ dbt.type_string() ~ ")") }} as invoice_id,
        'charge' as fee_kind,
        line_increments.billing_period_id,
        billing_periods.subscription_id,
        billing_periods.customer_id,
        billing_periods.plan_code,
        billing_periods.base_plan_code,
        line_increments.charge_id,
        charges.metric_code,
        charges.charge_model,
        charges.invoice_display_name
            || coalesce(' · ' || replace(charge_units.group_key, '|', ', '), '')
            || ' (usage to ' || cast(cast({{ dbt.dateadd('day', -1, 'cast(' ~ from_utc('line_increments.checkpoint_at', 'billing_periods.billing_timezone') ~ ' as date)') }} as date) as {{ dbt.type_string() }}) || ')'
            as description,
        charge_units.group_key,
        billing_periods.currency,
        billing_periods.minor_unit,
        billing_periods.service_start_at,
        line_increments.checkpoint_at as service_end_at,
        billing_periods.service_start_date,
        cast({{ dbt.dateadd('day', -1, 'cast(' ~ from_utc('line_increments.checkpoint_at', 'billing_periods.billing_timezone') ~ ' as date)') }} as date)
            as service_last_date,
        line_increments.checkpoint_at as invoice_at,
        cast(case when line_increments.units_increase > 0 then line_increments.units_increase else 0 end
             as {{ quantity_type() }}) as units,
        case when line_increments.event_increase > 0 then line_increments.event_increase else 0 end as event_count,
        cast(1 as {{ precise_money_type() }}) as proration_factor,
        {{ to_precise_money('line_increments.billed_amount') }} as precise_amount,
        cast(line_increments.billed_amount as {{ rounded_money_type() }}) as amount,
        -- The period's line that will deduct it.
        line_increments.invoice_line_id as period_invoice_line_id
    from line_increments
    inner join billing_periods
        on line_increments.billing_period_id = billing_periods.billing_period_id
    inner join charges
        on line_increments.charge_id = charges.charge_id
    inner join charge_units
        on line_increments.invoice_line_id = charge_units.invoice_line_id
    where line_increments.billed_amount > 0
)

select * from final
