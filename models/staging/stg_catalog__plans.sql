-- One row per plan.
with source as (
    select * from {{ source('catalog', 'plans') }}
),

final as (
    select
        source.plan_code,
        source.name as plan_name,
        source.billing_interval,
        source.currency,
        {{ to_precise_money('source.amount') }} as base_amount,
        source.is_pay_in_advance,
        coalesce(source.invoice_display_name, source.name) as invoice_display_name
    from source
)

select * from final
