{{ config(meta={'dagster': {'ref': {'name': 'fct_revenue_monthly'}}}) }}
-- The revenue identity (docs/revenue.md), per currency at every month's end, to the minor
-- unit: billed to date = recognised to date + deferred - unbilled. A failure names the
-- currency and month whose balances do not follow from the flows.
with monthly as (
    select
        currency,
        month_start,
        sum(billed_amount) as billed_amount,
        sum(recognised_amount) as recognised_amount,
        sum(deferred_balance) as deferred_balance,
        sum(unbilled_balance) as unbilled_balance
    from {{ ref('fct_revenue_monthly') }}
    group by 1, 2
),

to_date as (
    select
        monthly.*,
        sum(monthly.billed_amount) over (
            partition by monthly.currency order by monthly.month_start rows between unbounded preceding and current row
        ) as billed_to_date,
        sum(monthly.recognised_amount) over (
            partition by monthly.currency order by monthly.month_start rows between unbounded preceding and current row
        ) as recognised_to_date
    from monthly
)

select *
from to_date
where billed_to_date <> recognised_to_date + deferred_balance - unbilled_balance
