-- One row per price tier of a charge. A standard charge is one open tier from 0.
with source as (
    select * from {{ source('catalog', 'charge_tiers') }}
),

final as (
    select
        source.charge_id,
        source.tier_index,
        cast(source.from_value as {{ quantity_type() }}) as from_value,
        cast(source.to_value as {{ quantity_type() }}) as to_value,
        -- Units above this bound fall in the tier: the previous tier's to_value (0 for the first).
        cast(case when source.tier_index = 0 then 0 else source.from_value - 1 end as {{ quantity_type() }})
            as lower_bound,
        {{ to_precise_money('source.per_unit_amount') }} as per_unit_amount,
        {{ to_precise_money('source.flat_amount') }} as flat_amount
    from source
)

select * from final
