-- One row per fee on an invoice: a subscription's fees (int_fees) and one-off add-ons
-- (int_add_on_fees), the first step of an invoice's computation (docs/money.md).
with subscription_fees as (
    select * from {{ ref('int_fees') }}
),

add_on_fees as (
    select * from {{ ref('int_add_on_fees') }}
),

final as (
    select * from subscription_fees
    union all
    select * from add_on_fees
)

select * from final
