-- One row per credit note: unused days of a base fee paid in advance, after an upgrade or a
-- termination inside the period it paid for (docs/billing-calendar.md, "Plan changes").
with billing_periods as (
    select * from {{ ref('int_billing_periods') }}
),

plans as (
    select * from {{ ref('stg_catalog__plans') }}
),

customers as (
    select * from {{ ref('stg_catalog__customers') }}
),

credits as (
    select
        {{ dbt.hash("billing_periods.billing_period_id || '|unused_days'") }} as credit_note_id,
        billing_periods.end_reason as reason,
        billing_periods.customer_id,
        billing_periods.subscription_id,
        billing_periods.billing_period_id,
        billing_periods.plan_code,
        billing_periods.currency,
        billing_periods.minor_unit,
        billing_periods.subscription_ended_at as issued_at,
        billing_periods.unused_start_date as service_period_start,
        billing_periods.fee_period_last_date as service_period_end,
        billing_periods.unused_days,
        billing_periods.fee_days_in_period as days_in_period,
        plans.invoice_display_name || ' (unused days)' as description,
        {{ divide_exactly("plans.base_amount * billing_periods.unused_days", "billing_periods.fee_days_in_period") }}
            as precise_amount
    from billing_periods
    inner join plans
        on billing_periods.plan_code = plans.plan_code
    where plans.base_amount > 0
        and billing_periods.unused_days > 0
),

final as (
    select
        credits.credit_note_id,
        case when credits.issued_at > {{ as_of_timestamp() }} then 'draft' else 'closed' end as status,
        credits.reason,
        credits.customer_id,
        credits.subscription_id,
        credits.billing_period_id,
        credits.plan_code,
        credits.currency,
        credits.issued_at,
        cast({{ from_utc('credits.issued_at', 'customers.billing_timezone') }} as date) as issuing_date,
        credits.service_period_start,
        credits.service_period_end,
        credits.unused_days,
        credits.days_in_period,
        credits.description,
        credits.precise_amount,
        {{ round_money('credits.precise_amount', 'credits.minor_unit') }} as amount
    from credits
    inner join customers
        on credits.customer_id = customers.customer_id
)

select * from final
