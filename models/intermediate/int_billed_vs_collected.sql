-- One row per month (up to the run's as_of), customer and currency since its first finalised
-- invoice, as computed now: what was billed (finalised invoices' total due, taxes included, by
-- issuing date; voided ones are not billed) and collected (recorded payments, by payment date)
-- in the month, and what was still outstanding at its end.
with invoices as (
    select * from {{ ref('fct_invoices') }}
    where status = 'finalized'
),

payments as (
    select * from {{ ref('stg_ledger__payments') }}
),

flows as (
    select
        invoices.customer_id,
        invoices.currency,
        cast({{ dbt.date_trunc('month', 'invoices.issuing_date') }} as date) as month_start,
        invoices.total_amount as billed_amount,
        cast(0 as {{ rounded_money_type() }}) as collected_amount
    from invoices
    union all
    select
        payments.customer_id,
        payments.currency,
        cast({{ dbt.date_trunc('month', 'payments.paid_on') }} as date) as month_start,
        cast(0 as {{ rounded_money_type() }}) as billed_amount,
        payments.amount as collected_amount
    from payments
),

customer_first_months as (
    select customer_id, currency, min(month_start) as first_month
    from flows
    group by 1, 2
),

months as (
    select calendar.month_start
    from {{ calendar_months('customer_first_months', 'customer_first_months.first_month') }} as calendar
),

monthly_flows as (
    select customer_id, currency, month_start, sum(billed_amount) as billed_amount,
        sum(collected_amount) as collected_amount
    from flows
    group by 1, 2, 3
),

customer_months as (
    select
        months.month_start,
        customer_first_months.customer_id,
        customer_first_months.currency,
        coalesce(monthly_flows.billed_amount, 0) as billed_amount,
        coalesce(monthly_flows.collected_amount, 0) as collected_amount
    from customer_first_months
    inner join months
        on months.month_start >= customer_first_months.first_month
    left join monthly_flows
        on customer_first_months.customer_id = monthly_flows.customer_id
        and customer_first_months.currency = monthly_flows.currency
        and months.month_start = monthly_flows.month_start
),

final as (
    select
        customer_months.month_start,
        customer_months.customer_id,
        customer_months.currency,
        cast(customer_months.billed_amount as {{ rounded_money_type() }}) as billed_amount,
        cast(customer_months.collected_amount as {{ rounded_money_type() }}) as collected_amount,
        cast(sum(customer_months.billed_amount - customer_months.collected_amount) over (
            partition by customer_months.customer_id, customer_months.currency order by customer_months.month_start
            rows between unbounded preceding and current row
        ) as {{ rounded_money_type() }}) as outstanding_balance
    from customer_months
)

select * from final
