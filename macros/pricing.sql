{#- Pricing a charge's units over its tiers (docs/charge-models.md), shared by the period's fees
    (int_charge_tiers_rated) and the usage to date that progressive billing checks
    (int_usage_checkpoints). `tiers` is an alias of stg_catalog__charge_tiers; the other
    arguments are SQL expressions. -#}

{#- The units of `units` that fall in a tier: package prices what is above the free units,
    volume all units in the one tier whose range holds them, graduated models the slice. -#}
{% macro tier_units(charge_model, units, free_units, tiers) -%}
    cast(
        case
            when {{ charge_model }} = 'package' then
                case when {{ units }} > {{ free_units }} then {{ units }} - {{ free_units }} else 0 end
            when {{ charge_model }} = 'volume' then
                case when {{ tiers }}.from_value <= ceil({{ units }})
                    and ({{ tiers }}.to_value is null or {{ units }} <= {{ tiers }}.to_value)
                    then {{ units }} else 0 end
            else {{ units_in_tier(units, tiers ~ '.lower_bound', tiers ~ '.to_value') }}
        end
        as {{ quantity_type() }}
    )
{%- endmacro %}

{#- Whether a tier's flat amount is due: volume's one tier; a graduated percentage tier the
    units fall in; any other reached tier, the first even at zero units. -#}
{% macro tier_is_reached(charge_model, units, tiers) -%}
    case
        when {{ charge_model }} = 'volume' then
            {{ tiers }}.from_value <= ceil({{ units }})
            and ({{ tiers }}.to_value is null or {{ units }} <= {{ tiers }}.to_value)
        when {{ charge_model }} = 'graduated_percentage' then {{ units }} > {{ tiers }}.lower_bound
        else {{ tiers }}.tier_index = 0 or {{ units }} > {{ tiers }}.lower_bound
    end
{%- endmacro %}

{#- A tier's amount (precise): whole packages at the package price, or units x price plus the
    flat amount when reached. -#}
{% macro tier_amount(charge_model, units_in_tier, is_reached, package_size, tiers) -%}
    {{ to_precise_money(
        "case when " ~ charge_model ~ " = 'package'"
        ~ " then " ~ ceil_divide(units_in_tier, package_size) ~ " * " ~ tiers ~ ".per_unit_amount"
        ~ " else " ~ units_in_tier ~ " * " ~ tiers ~ ".per_unit_amount"
        ~ " + case when " ~ is_reached ~ " then " ~ tiers ~ ".flat_amount else 0 end end") }}
{%- endmacro %}

{#- A metric's rounding of its units: round, ceil or floor to a step of 10^-precision. -#}
{% macro rounded_units(units, rounding_function, rounding_step) -%}
    cast(
        case {{ rounding_function }}
            when 'round' then round({{ divide_exactly(units, rounding_step) }}, 0) * {{ rounding_step }}
            when 'ceil' then ceil({{ divide_exactly(units, rounding_step) }}) * {{ rounding_step }}
            when 'floor' then floor({{ divide_exactly(units, rounding_step) }}) * {{ rounding_step }}
            else {{ units }}
        end
        as {{ quantity_type() }}
    )
{%- endmacro %}
