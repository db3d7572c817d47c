-- One row per tax a billing entity, customer, plan or charge names (docs/invoice-amounts.md).
-- `specificity` orders the levels: a fee bears the taxes of its most specific level.
with source as (
    select * from {{ source('catalog', 'tax_assignments') }}
),

final as (
    select
        source.assigned_to,
        source.target_code,
        source.tax_code,
        case source.assigned_to
            when 'charge' then 4
            when 'plan' then 3
            when 'customer' then 2
            when 'billing_entity' then 1
        end as specificity
    from source
)

select * from final
