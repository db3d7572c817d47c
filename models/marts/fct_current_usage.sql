-- One row per line of an open period (a draft invoice): what the customer has consumed so far
-- and what it comes to, as the period's invoice would bill it if it closed at the run's as_of
-- (before coupons and taxes), with how far through the period the run is. Usage lines read
-- int_usage, which each run re-aggregates only for the lines that received events since the
-- last one, so this refreshes at the cost of the new events, not of the history.
with lines as (
    select * from {{ ref('fct_invoice_lines') }}
    where status = 'draft'
        and fee_kind in ('charge', 'subscription', 'true_up')
        and not is_progressive_billing
),

usage as (
    select * from {{ ref('int_usage') }}
),

customers as (
    select * from {{ ref('stg_catalog__customers') }}
),

final as (
    select
        lines.invoice_line_id,
        lines.invoice_id,
        lines.customer_id,
        customers.customer_name,
        lines.subscription_id,
        lines.plan_code,
        lines.billing_period_id,
        lines.fee_kind,
        lines.charge_id,
        lines.metric_code,
        lines.charge_model,
        lines.group_key,
        lines.description,
        lines.currency,
        lines.service_period_start,
        lines.service_period_end,
        lines.invoice_at,
        lines.quantity as units_to_date,
        lines.event_count,
        usage.last_usage_date,
        lines.amount as estimated_amount,
        -- What progressive billing already invoiced of it, and what is left to invoice.
        lines.progressive_billing_credit_amount,
        cast(lines.amount - lines.progressive_billing_credit_amount as {{ rounded_money_type() }})
            as estimated_amount_to_invoice,
        -- 0 before the period starts (an in-advance fee for the next one), at most its length.
        case
            when cast({{ as_of_timestamp() }} as date) < lines.service_period_start then 0
            when cast({{ as_of_timestamp() }} as date) > lines.service_period_end
                then cast({{ dbt.datediff('lines.service_period_start', 'lines.service_period_end', 'day') }}
                          as integer) + 1
            else cast({{ dbt.datediff('lines.service_period_start', 'cast(' ~ as_of_timestamp() ~ ' as date)', 'day') }}
                      as integer) + 1
        end as days_elapsed,
        cast({{ dbt.datediff('lines.service_period_start', 'lines.service_period_end', 'day') }} as integer) + 1
            as days_in_period,
        {{ as_of_timestamp() }} as computed_as_of
    from lines
    inner join customers
        on lines.customer_id = customers.customer_id
    left join usage
        on lines.invoice_line_id = usage.invoice_line_id
)

select * from final
