-- One row per invoice line: a base fee, a usage fee, a true-up or an add-on, with the arithmetic
-- that explains it.
with fees as (
    select * from {{ ref('int_fees') }}
    union all
    -- One-off invoices of add-ons: the same columns, no subscription.
    select * from {{ ref('int_add_on_fees') }}
),

final as (
    select
        fees.invoice_line_id,
        fees.invoice_id,
        case when fees.invoice_at > {{ as_of_timestamp() }} then 'draft' else 'closed' end as status,
        fees.fee_kind,
        fees.customer_id,
        fees.subscription_id,
        fees.plan_code,
        fees.base_plan_code,
        fees.billing_period_id,
        fees.charge_id,
        fees.metric_code,
        fees.charge_model,
        fees.description,
        fees.group_key,
        fees.currency,
        fees.service_start_date as service_period_start,
        fees.service_last_date as service_period_end,
        fees.service_start_at,
        fees.service_end_at,
        fees.invoice_at,
        fees.units as quantity,
        case
            when fees.fee_kind = 'subscription' then fees.precise_amount
            when fees.units > 0 then {{ divide_exactly('fees.precise_amount', 'fees.units') }}
            else cast(0 as {{ precise_money_type() }})
        end as unit_amount,
        fees.proration_factor,
        fees.precise_amount,
        fees.amount,
        cast(fees.event_count as bigint) as event_count
    from fees
)

select * from final
