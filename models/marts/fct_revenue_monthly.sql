-- One row per month, revenue key (customer, currency, stream, plan, metric) and kind: what was
-- billed and recognised in the month, and the deferred and unbilled balances at its end (at
-- the run's as_of for the current month), excluding taxes, per currency (no conversion).
-- billed to date = recognised to date + deferred - unbilled, at every month's end.
-- A closed month reads as it was locked; corrections to it since are `prior_period_adjustment`
-- rows of the first open month (macros/month_closes.sql, docs/revenue.md).
{%- set keys = ['revenue_key', 'customer_id', 'currency', 'revenue_stream', 'plan_code', 'metric_code'] %}
with live as (
    select * from {{ ref('int_revenue_monthly') }}
),

locked as (
    select * from {{ source('ledger', 'closed_revenue_monthly') }}
),

{{ figures_with_month_closes('live', 'locked', keys, ['billed_amount', 'recognised_amount'],
                             ['deferred_balance', 'unbilled_balance']) }}
