-- One row per applied add-on: a one-off invoice line (units x unit amount), invoiced when it was
-- applied, on an invoice of its own (never merged with a subscription's invoice, and outside
-- coupons). Same columns as int_fees, so the invoice marts read both.
with applied as (
    select * from {{ ref('stg_catalog__applied_add_ons') }}
),

currencies as (
    select * from {{ ref('currencies') }}
),

customers as (
    select * from {{ ref('stg_catalog__customers') }}
),

final as (
    select
        {{ dbt.hash("'add_on|' || applied.applied_add_on_id") }} as invoice_line_id,
        {{ dbt.hash("'one_off|' || applied.applied_add_on_id") }} as invoice_id,
        'add_on' as fee_kind,
        cast(null as {{ dbt.type_string() }}) as billing_period_id,
        cast(null as {{ dbt.type_string() }}) as subscription_id,
        applied.customer_id,
        cast(null as {{ dbt.type_string() }}) as plan_code,
        cast(null as {{ dbt.type_string() }}) as base_plan_code,
        cast(null as {{ dbt.type_string() }}) as charge_id,
        cast(null as {{ dbt.type_string() }}) as metric_code,
        cast(null as {{ dbt.type_string() }}) as charge_model,
        applied.description,
        cast(null as {{ dbt.type_string() }}) as group_key,
        applied.currency,
        currencies.minor_unit,
        applied.applied_at as service_start_at,
        applied.applied_at as service_end_at,
        cast({{ from_utc('applied.applied_at', 'customers.billing_timezone') }} as date) as service_start_date,
        cast({{ from_utc('applied.applied_at', 'customers.billing_timezone') }} as date) as service_last_date,
        applied.applied_at as invoice_at,
        applied.units,
        0 as event_count,
        cast(1 as {{ precise_money_type() }}) as proration_factor,
        {{ to_precise_money('applied.units * applied.unit_amount') }} as precise_amount,
        {{ round_money(to_precise_money('applied.units * applied.unit_amount'), 'currencies.minor_unit') }} as amount
    from applied
    inner join currencies
        on applied.currency = currencies.currency_code
    inner join customers
        on applied.customer_id = customers.customer_id
)

select * from final
