-- One row per charge: a plan's price for one billable metric.
with charges as (
    select * from {{ source('catalog', 'charges') }}
),

metrics as (
    select * from {{ source('catalog', 'billable_metrics') }}
),

final as (
    select
        charges.charge_id,
        charges.plan_code,
        charges.metric_code,
        charges.charge_model,
        charges.charge_position,
        coalesce(charges.invoice_display_name, metrics.name) as invoice_display_name,
        metrics.aggregation,
        metrics.field_name
    from charges
    inner join metrics
        on charges.metric_code = metrics.metric_code
)

select * from final
