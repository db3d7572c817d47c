-- One row per billing period, recurring unique_count price and pricing group (group_key '' when
-- the charge has none) with values active at some time in the period: how many
-- (int_unique_count_values). A period without any has no row; int_charge_units counts it 0.
with active_values as (
    select * from {{ ref('int_unique_count_values') }}
),

final as (
    select
        active_values.billing_period_id,
        active_values.charge_id,
        active_values.group_key,
        count(distinct active_values.unique_value) as active_value_count
    from active_values
    group by 1, 2, 3
)

select * from final
