-- One row per charge fee and price tier: the units that fall in the tier and what they cost.
-- A charge fee is one line of int_charge_units: period x price [x pricing group].
-- The tiered charge models, as the established engine prices them (docs/charge-models.md):
-- - graduated: tier k prices the units above the previous tier's to_value, up to its own;
--   every reached tier adds its flat amount, the first even at zero units;
-- - graduated_percentage: the same slices at rate / 100 per unit of amount; a tier's flat
--   amount only when units fall in it;
-- - volume: the one tier whose range holds the total (from_value <= ceil(units) <= ... <= to_value)
--   prices every unit, plus its flat amount, even at zero units;
-- - standard: one open tier; dynamic: one open tier at 1 (the units are the amount);
-- - package: ceil((units - free_units) / package_size) packages at the tier's price.
-- Percentage charges are priced per event in int_percentage_fees.
with charge_units as (
    select * from {{ ref('int_charge_units') }}
),

charges as (
    select * from {{ ref('stg_catalog__charges') }}
),

tiers as (
    select * from {{ ref('stg_catalog__charge_tiers') }}
),

charge_fees as (
    select
        charge_units.invoice_line_id,
        charge_units.billing_period_id,
        charge_units.charge_id,
        charges.charge_model,
        charges.package_size,
        charges.free_units,
        charge_units.units
    from charge_units
    inner join charges
        on charge_units.charge_id = charges.charge_id
    where charges.charge_model <> 'percentage'
),

tier_units as (
    select
        charge_fees.invoice_line_id,
        charge_fees.billing_period_id,
        charge_fees.charge_id,
        charge_fees.charge_model,
        charge_fees.package_size,
        charge_fees.free_units,
        charge_fees.units,
        tiers.tier_index,
        tiers.from_value,
        tiers.to_value,
        tiers.per_unit_amount,
        tiers.flat_amount,
        {{ tier_units('charge_fees.charge_model', 'charge_fees.units', 'charge_fees.free_units', 'tiers') }}
            as units_in_tier,
        {{ tier_is_reached('charge_fees.charge_model', 'charge_fees.units', 'tiers') }} as is_reached
    from charge_fees
    inner join tiers
        on charge_fees.charge_id = tiers.charge_id
),

final as (
    select
        tier_units.invoice_line_id,
        tier_units.billing_period_id,
        tier_units.charge_id,
        tier_units.charge_model,
        tier_units.units,
        tier_units.tier_index,
        tier_units.from_value,
        tier_units.to_value,
        tier_units.per_unit_amount,
        tier_units.flat_amount,
        tier_units.units_in_tier,
        tier_units.is_reached,
        case when tier_units.charge_model = 'package'
            then {{ ceil_divide('tier_units.units_in_tier', 'tier_units.package_size') }}
        end as package_count,
        {{ tier_amount('tier_units.charge_model', 'tier_units.units_in_tier', 'tier_units.is_reached',
                       'tier_units.package_size', 'tier_units') }}
            as tier_amount
    from tier_units
)

select * from final
