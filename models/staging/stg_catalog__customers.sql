-- One row per customer, with the time zone its billing periods are computed in.
with customers as (
    select * from {{ source('catalog', 'customers') }}
),

billing_entities as (
    select * from {{ source('catalog', 'billing_entities') }}
),

final as (
    select
        customers.external_customer_id as customer_id,
        customers.name as customer_name,
        customers.email,
        customers.country,
        customers.currency,
        customers.billing_entity_code,
        customers.is_tax_exempt,
        -- The customer's zone, else the billing entity's (docs/catalog.md).
        coalesce(customers.timezone, billing_entities.timezone) as billing_timezone
    from customers
    inner join billing_entities
        on customers.billing_entity_code = billing_entities.billing_entity_code
)

select * from final
