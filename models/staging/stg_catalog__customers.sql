-- One row per customer, with the time zone its billing periods are computed in and the
-- lifecycle settings of its invoices (grace period, late-event look-back; docs/invoice-lifecycle.md).
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
        coalesce(customers.timezone, billing_entities.timezone) as billing_timezone,
        billing_entities.invoice_prefix,
        -- Days its invoices stay drafts after their date: the customer's, else the billing entity's.
        cast(coalesce(customers.invoice_grace_period_days, billing_entities.invoice_grace_period_days, 0) as integer)
            as invoice_grace_period_days,
        cast(billing_entities.late_events_lookback_days as integer) as late_events_lookback_days
    from customers
    inner join billing_entities
        on customers.billing_entity_code = billing_entities.billing_entity_code
)

select * from final
