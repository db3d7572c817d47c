-- One row per plan.
with source as (
    select * from {{ source('catalog', 'plans') }}
),

final as (
    select
        source.plan_code,
        -- A contract plan (a subscription's overrides, "<plan>@<subscription>") names its plan.
        coalesce(source.base_plan_code, source.plan_code) as base_plan_code,
        source.name as plan_name,
        source.billing_interval,
        source.currency,
        {{ to_precise_money('source.amount') }} as base_amount,
        source.is_pay_in_advance,
        coalesce(source.trial_period_days, 0) as trial_period_days,
        coalesce(source.bill_charges_monthly, false) as bill_charges_monthly,
        {{ to_precise_money('source.minimum_commitment') }} as minimum_commitment,
        coalesce(source.invoice_display_name, source.name) as invoice_display_name
    from source
)

select * from final
