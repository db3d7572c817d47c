-- One row per charge fee and price tier: the units that fall in the tier and what they cost.
-- A charge fee is one subscription x billing period x charge, whether or not it had events.
-- Graduated: tier k prices the units above the previous tier's to_value, up to its own; every
-- reached tier adds its flat amount, the first even at zero units. Standard is one open tier.
with billing_periods as (
    select * from {{ ref('int_billing_periods') }}
),

charges as (
    select * from {{ ref('stg_catalog__charges') }}
),

tiers as (
    select * from {{ ref('stg_catalog__charge_tiers') }}
),

usage as (
    select * from {{ ref('int_usage') }}
),

charge_fees as (
    select
        {{ dbt.hash("billing_periods.billing_period_id || '|' || charges.charge_id") }} as invoice_line_id,
        billing_periods.billing_period_id,
        charges.charge_id,
        coalesce(usage.units, cast(0 as {{ quantity_type() }})) as units
    from billing_periods
    inner join charges
        on billing_periods.plan_code = charges.plan_code
    left join usage
        on usage.billing_period_id = billing_periods.billing_period_id
        and usage.charge_id = charges.charge_id
),

tier_units as (
    select
        charge_fees.invoice_line_id,
        charge_fees.billing_period_id,
        charge_fees.charge_id,
        charge_fees.units,
        tiers.tier_index,
        tiers.from_value,
        tiers.to_value,
        tiers.per_unit_amount,
        tiers.flat_amount,
        cast(
            case
                when charge_fees.units <= tiers.lower_bound then 0
                when tiers.to_value is null or charge_fees.units < tiers.to_value
                    then charge_fees.units - tiers.lower_bound
                else tiers.to_value - tiers.lower_bound
            end
            as {{ quantity_type() }}
        ) as units_in_tier,
        (tiers.tier_index = 0 or charge_fees.units > tiers.lower_bound) as is_reached
    from charge_fees
    inner join tiers
        on charge_fees.charge_id = tiers.charge_id
),

final as (
    select
        tier_units.*,
        {{ to_precise_money(
            "tier_units.units_in_tier * tier_units.per_unit_amount"
            ~ " + case when tier_units.is_reached then tier_units.flat_amount else 0 end") }}
            as tier_amount
    from tier_units
)

select * from final
