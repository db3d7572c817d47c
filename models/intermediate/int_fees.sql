-- One row per fee, the future invoice line: a subscription's base fee for a billing period,
-- a charge's usage fee for a billing period, or the true-up of a charge's spending minimum. Amounts are rounded here, once per fee, by
-- round_money (half-up to the currency's minor unit); the precise amount is kept beside it.
-- invoice_at is when the fee is invoiced: usage and arrears base fees at the end of their
-- service, in-advance base fees at its start.
with billing_periods as (
    select * from {{ ref('int_billing_periods') }}
),

plans as (
    select * from {{ ref('stg_catalog__plans') }}
),

charges as (
    select * from {{ ref('stg_catalog__charges') }}
),

rated_tiers as (
    select * from {{ ref('int_charge_tiers_rated') }}
),

percentage_fees as (
    select * from {{ ref('int_percentage_fees') }}
),

charge_units as (
    select * from {{ ref('int_charge_units') }}
),

in_advance_fees as (
    select * from {{ ref('int_in_advance_fees') }}
),

charge_fees as (
    select
        rated_tiers.invoice_line_id,
        rated_tiers.billing_period_id,
        rated_tiers.charge_id,
        max(rated_tiers.units) as units,
        {{ to_precise_money('sum(rated_tiers.tier_amount)') }} as precise_amount
    from rated_tiers
    group by 1, 2, 3

    union all

    select
        percentage_fees.invoice_line_id,
        percentage_fees.billing_period_id,
        percentage_fees.charge_id,
        percentage_fees.units,
        percentage_fees.precise_amount
    from percentage_fees
),

usage_fees as (
    select
        charge_fees.invoice_line_id,
        'charge' as fee_kind,
        billing_periods.billing_period_id,
        charge_fees.charge_id,
        charges.metric_code,
        charges.charge_model,
        -- A pricing group is shown after the price's name: "Input tokens (atlas-large) · region=eu".
        charges.invoice_display_name
            || coalesce(' · ' || replace(charge_units.group_key, '|', ', '), '') as description,
        charge_units.group_key,
        charge_fees.units,
        charge_fees.precise_amount,
        charge_units.event_count,
        cast(1 as {{ precise_money_type() }}) as proration_factor,
        billing_periods.service_end_at as invoice_at
    from charge_fees
    inner join billing_periods
        on charge_fees.billing_period_id = billing_periods.billing_period_id
    inner join charges
        on charge_fees.charge_id = charges.charge_id
    inner join charge_units
        on charge_fees.invoice_line_id = charge_units.invoice_line_id
),

subscription_fees as (
    select
        {{ dbt.hash("billing_periods.billing_period_id || '|subscription'") }} as invoice_line_id,
        'subscription' as fee_kind,
        billing_periods.billing_period_id,
        cast(null as {{ dbt.type_string() }}) as charge_id,
        cast(null as {{ dbt.type_string() }}) as metric_code,
        cast(null as {{ dbt.type_string() }}) as charge_model,
        plans.invoice_display_name as description,
        cast(null as {{ dbt.type_string() }}) as group_key,
        -- Whole-day proration: billed days after any trial / days in the full period (docs/money.md).
        cast(1 as {{ quantity_type() }}) as units,
        {{ divide_exactly("plans.base_amount * billing_periods.base_fee_days", "billing_periods.fee_days_in_period") }}
            as precise_amount,
        0 as event_count,
        {{ divide_exactly("billing_periods.base_fee_days", "billing_periods.fee_days_in_period") }} as proration_factor,
        -- In advance: when the paid service starts (the end of a trial); in arrears: when it ends.
        billing_periods.base_fee_invoice_at as invoice_at
    from billing_periods
    inner join plans
        on billing_periods.plan_code = plans.plan_code
    where plans.base_amount > 0
        and billing_periods.carries_base_fee
),

advance_fees as (
    select
        in_advance_fees.invoice_line_id,
        'charge' as fee_kind,
        in_advance_fees.billing_period_id,
        in_advance_fees.charge_id,
        charges.metric_code,
        charges.charge_model,
        charges.invoice_display_name || ' (in advance)'
            || coalesce(' · ' || replace(in_advance_fees.group_key, '|', ', '), '') as description,
        in_advance_fees.group_key,
        in_advance_fees.units,
        in_advance_fees.precise_amount,
        1 as event_count,
        cast(1 as {{ precise_money_type() }}) as proration_factor,
        in_advance_fees.event_at as invoice_at
    from in_advance_fees
    inner join charges
        on in_advance_fees.charge_id = charges.charge_id
),

-- Spending minimum: when a charge's fees for a period (all its prices and groups together)
-- stay under its minimum, prorated like the base fee, a true-up fee tops them up to it. Both
-- sides are taken as the customer sees them, rounded to the currency, so the charge's lines
-- and its true-up add up to exactly the (rounded, prorated) minimum on the invoice.
charge_totals as (
    select
        usage_fees.billing_period_id,
        charges.parent_charge_id,
        sum({{ round_money('usage_fees.precise_amount', 'billing_periods.minor_unit') }}) as charged_amount,
        max(usage_fees.invoice_at) as invoice_at
    from usage_fees
    inner join charges
        on usage_fees.charge_id = charges.charge_id
    inner join billing_periods
        on usage_fees.billing_period_id = billing_periods.billing_period_id
    group by 1, 2
),

minimums as (
    select
        charge_totals.*,
        parent.charge_id,
        parent.metric_code,
        parent.charge_model,
        parent.invoice_display_name,
        {{ round_money(divide_exactly("parent.min_amount * billing_periods.billed_days", "billing_periods.days_in_period"),
                       'billing_periods.minor_unit') }} as minimum_amount,
        {{ divide_exactly("billing_periods.billed_days", "billing_periods.days_in_period") }} as proration_factor
    from charge_totals
    inner join charges as parent
        on charge_totals.parent_charge_id = parent.charge_id
    inner join billing_periods
        on charge_totals.billing_period_id = billing_periods.billing_period_id
    where parent.min_amount is not null
),

true_up_fees as (
    select
        {{ dbt.hash("minimums.billing_period_id || '|' || minimums.parent_charge_id || '|true_up'") }}
            as invoice_line_id,
        'true_up' as fee_kind,
        minimums.billing_period_id,
        minimums.charge_id,
        minimums.metric_code,
        minimums.charge_model,
        minimums.invoice_display_name || ' (minimum spend)' as description,
        cast(null as {{ dbt.type_string() }}) as group_key,
        cast(1 as {{ quantity_type() }}) as units,
        {{ to_precise_money('minimums.minimum_amount - minimums.charged_amount') }} as precise_amount,
        0 as event_count,
        minimums.proration_factor,
        minimums.invoice_at
    from minimums
    where minimums.minimum_amount > minimums.charged_amount
),

all_fees as (
    select * from usage_fees
    union all
    select * from advance_fees
    union all
    select * from subscription_fees
    union all
    select * from true_up_fees
),

-- Minimum commitment: when everything a fee period (the plan's interval) invoiced stays under
-- the plan's commitment, prorated like the base fee and rounded, a true-up at the period's end
-- tops it up. Fees count as invoiced (each line rounded), like the spending minimum above.
fee_period_totals as (
    select
        billing_periods.subscription_id,
        billing_periods.fee_period_index,
        sum({{ round_money('all_fees.precise_amount', 'billing_periods.minor_unit') }}) as invoiced_amount
    from all_fees
    inner join billing_periods
        on all_fees.billing_period_id = billing_periods.billing_period_id
    group by 1, 2
),

commitments as (
    select
        billing_periods.billing_period_id,
        plans.invoice_display_name,
        billing_periods.base_fee_days,
        billing_periods.fee_days_in_period,
        billing_periods.base_fee_end_at,
        {{ round_money(divide_exactly("plans.minimum_commitment * billing_periods.base_fee_days",
                                      "billing_periods.fee_days_in_period"), 'billing_periods.minor_unit') }}
            as commitment_amount,
        coalesce(fee_period_totals.invoiced_amount, 0) as invoiced_amount
    from billing_periods
    inner join plans
        on billing_periods.plan_code = plans.plan_code
    left join fee_period_totals
        on billing_periods.subscription_id = fee_period_totals.subscription_id
        and billing_periods.fee_period_index = fee_period_totals.fee_period_index
    where plans.minimum_commitment is not null
        and billing_periods.closes_fee_period
        and billing_periods.base_fee_days > 0
),

commitment_fees as (
    select
        {{ dbt.hash("commitments.billing_period_id || '|commitment'") }} as invoice_line_id,
        'commitment' as fee_kind,
        commitments.billing_period_id,
        cast(null as {{ dbt.type_string() }}) as charge_id,
        cast(null as {{ dbt.type_string() }}) as metric_code,
        cast(null as {{ dbt.type_string() }}) as charge_model,
        commitments.invoice_display_name || ' (minimum commitment)' as description,
        cast(null as {{ dbt.type_string() }}) as group_key,
        cast(1 as {{ quantity_type() }}) as units,
        {{ to_precise_money('commitments.commitment_amount - commitments.invoiced_amount') }} as precise_amount,
        0 as event_count,
        {{ divide_exactly("commitments.base_fee_days", "commitments.fee_days_in_period") }} as proration_factor,
        commitments.base_fee_end_at as invoice_at
    from commitments
    where commitments.commitment_amount > commitments.invoiced_amount
),

every_fee as (
    select * from all_fees
    union all
    select * from commitment_fees
),

final as (
    select
        every_fee.invoice_line_id,
        {{ dbt.hash("billing_periods.customer_id || '|' || billing_periods.currency || '|' || cast(every_fee.invoice_at as " ~ dbt.type_string() ~ ")") }}
            as invoice_id,
        every_fee.fee_kind,
        every_fee.billing_period_id,
        billing_periods.subscription_id,
        billing_periods.customer_id,
        billing_periods.plan_code,
        billing_periods.base_plan_code,
        every_fee.charge_id,
        every_fee.metric_code,
        every_fee.charge_model,
        every_fee.description,
        every_fee.group_key,
        billing_periods.currency,
        billing_periods.minor_unit,
        -- A base fee's service starts after the trial; every other fee covers the whole service.
        case when every_fee.fee_kind in ('subscription', 'commitment')
            then billing_periods.base_fee_start_at else billing_periods.service_start_at end as service_start_at,
        case when every_fee.fee_kind in ('subscription', 'commitment')
            then billing_periods.base_fee_end_at else billing_periods.service_end_at end as service_end_at,
        case when every_fee.fee_kind in ('subscription', 'commitment')
            then billing_periods.base_fee_start_date else billing_periods.service_start_date end as service_start_date,
        case when every_fee.fee_kind in ('subscription', 'commitment')
            then billing_periods.base_fee_last_date else billing_periods.service_last_date end as service_last_date,
        every_fee.invoice_at,
        every_fee.units,
        every_fee.event_count,
        every_fee.proration_factor,
        every_fee.precise_amount,
        {{ round_money('every_fee.precise_amount', 'billing_periods.minor_unit') }} as amount
    from every_fee
    inner join billing_periods
        on every_fee.billing_period_id = billing_periods.billing_period_id
)

select * from final
