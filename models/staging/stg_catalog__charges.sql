-- One row per price of a charge: a plan's default price for one billable metric, and one more
-- row per filter of that charge (a separately priced bucket, parent_charge_id = the default).
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
        metrics.field_name,
        coalesce(metrics.is_recurring, false) as is_recurring,
        metrics.rounding_function,
        cast(metrics.rounding_step as {{ quantity_type() }}) as rounding_step,
        {{ to_precise_money('charges.min_amount') }} as min_amount,
        cast(charges.package_size as {{ quantity_type() }}) as package_size,
        cast(coalesce(charges.free_units, 0) as {{ quantity_type() }}) as free_units,
        {{ to_precise_money('charges.rate') }} as rate,
        {{ to_precise_money('charges.fixed_amount') }} as fixed_amount,
        charges.free_units_per_events,
        {{ to_precise_money('charges.free_units_per_total_aggregation') }} as free_units_per_total_aggregation,
        {{ to_precise_money('charges.per_transaction_min_amount') }} as per_transaction_min_amount,
        {{ to_precise_money('charges.per_transaction_max_amount') }} as per_transaction_max_amount,
        charges.parent_charge_id,
        charges.filter_position,
        charges.group_key_1,
        charges.group_key_2,
        charges.group_key_3,
        coalesce(charges.is_pay_in_advance, false) as is_pay_in_advance,
        coalesce(charges.price_key, charges.metric_code) as price_key
    from charges
    inner join metrics
        on charges.metric_code = metrics.metric_code
)

select * from final
