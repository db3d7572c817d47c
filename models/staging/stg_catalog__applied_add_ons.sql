-- One row per applied add-on (a line of a one-off invoice), with the add-on's name and currency.
with applied as (
    select * from {{ source('catalog', 'applied_add_ons') }}
),

add_ons as (
    select * from {{ source('catalog', 'add_ons') }}
),

final as (
    select
        applied.applied_add_on_id,
        applied.external_customer_id as customer_id,
        applied.add_on_code,
        applied.applied_at,
        cast(applied.units as {{ quantity_type() }}) as units,
        {{ to_precise_money('applied.unit_amount') }} as unit_amount,
        coalesce(applied.description, add_ons.invoice_display_name, add_ons.name) as description,
        add_ons.currency
    from applied
    inner join add_ons
        on applied.add_on_code = add_ons.add_on_code
)

select * from final
