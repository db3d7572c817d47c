-- One row per value a charge filter accepts for one property key. An event belongs to a
-- filter when, for each of the filter's keys, its property holds one of the accepted values.
with filter_values as (
    select * from {{ source('catalog', 'charge_filter_values') }}
),

charges as (
    select * from {{ source('catalog', 'charges') }}
),

key_counts as (
    select filter_values.charge_id, count(distinct filter_values.filter_key) as filter_key_count
    from filter_values
    group by 1
),

final as (
    select
        filter_values.charge_id,
        charges.parent_charge_id,
        charges.filter_position,
        filter_values.filter_key,
        filter_values.filter_value,
        key_counts.filter_key_count
    from filter_values
    inner join charges
        on filter_values.charge_id = charges.charge_id
    inner join key_counts
        on filter_values.charge_id = key_counts.charge_id
)

select * from final
