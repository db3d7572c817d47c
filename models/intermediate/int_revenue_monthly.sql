-- One row per calendar month (up to the run's as_of) and revenue key (customer, currency,
-- stream, plan, metric), as computed now: what was billed and recognised in the month, and the
-- balances at its end (at as_of for the current month). Per item of revenue, at a month's end:
-- billed by then -> deferred = amount - recognised to date (billed ahead of the service);
-- not billed yet -> unbilled = recognised to date (served, not invoiced yet).
-- So billed to date = recognised to date + deferred - unbilled, item by item and in total.
-- fct_revenue_monthly reads this, with the months already closed as they were locked.
with items as (
    select * from {{ ref('int_revenue_items') }}
),

recognition as (
    select * from {{ ref('fct_revenue_recognition') }}
    where status = 'recognised'
),

item_first_months as (
    select
        items.*,
        {{ dbt.hash("items.customer_id || '|' || items.currency || '|' || items.revenue_stream || '|' || "
                    "coalesce(items.plan_code, '') || '|' || coalesce(items.metric_code, '')") }} as revenue_key,
        cast({{ dbt.date_trunc('month', 'items.billed_on') }} as date) as billed_month,
        cast({{ dbt.date_trunc('month',
            'case when items.billed_on is not null and items.billed_on < items.recognition_start '
            'then items.billed_on else items.recognition_start end') }} as date) as first_month,
        -- After this month the item is billed and recognised: it has nothing more to say (an
        -- item not billed yet stays unbilled up to the as_of).
        cast({{ dbt.date_trunc('month',
            'case when items.billed_on is null then ' ~ as_of_timestamp() ~ ' '
            'when items.billed_on > items.recognition_end then items.billed_on else items.recognition_end end')
            }} as date) as last_month
    from items
),

months as (
    select calendar.month_start
    from {{ calendar_months('item_first_months', 'item_first_months.first_month') }} as calendar
),

recognised_per_month as (
    select
        recognition.revenue_item_id,
        cast({{ dbt.date_trunc('month', 'recognition.recognised_on') }} as date) as month_start,
        sum(recognition.amount) as recognised_amount
    from recognition
    group by 1, 2
),

item_months as (
    select
        item_first_months.revenue_item_id,
        item_first_months.revenue_key,
        item_first_months.customer_id,
        item_first_months.currency,
        item_first_months.revenue_stream,
        item_first_months.plan_code,
        item_first_months.metric_code,
        months.month_start,
        case when item_first_months.billed_month = months.month_start then item_first_months.amount else 0 end
            as billed_amount,
        case when item_first_months.billed_month <= months.month_start then 1 else 0 end as is_billed,
        item_first_months.amount,
        coalesce(recognised_per_month.recognised_amount, 0) as recognised_amount
    from item_first_months
    inner join months
        on months.month_start >= item_first_months.first_month
        and months.month_start <= item_first_months.last_month
    left join recognised_per_month
        on item_first_months.revenue_item_id = recognised_per_month.revenue_item_id
        and months.month_start = recognised_per_month.month_start
),

item_balances as (
    select
        item_months.*,
        sum(item_months.recognised_amount) over (
            partition by item_months.revenue_item_id order by item_months.month_start
            rows between unbounded preceding and current row
        ) as recognised_to_date
    from item_months
),

final as (
    select
        item_balances.month_start,
        item_balances.revenue_key,
        item_balances.customer_id,
        item_balances.currency,
        item_balances.revenue_stream,
        item_balances.plan_code,
        item_balances.metric_code,
        cast(sum(item_balances.billed_amount) as {{ rounded_money_type() }}) as billed_amount,
        cast(sum(item_balances.recognised_amount) as {{ rounded_money_type() }}) as recognised_amount,
        cast(sum(case when item_balances.is_billed = 1 then item_balances.amount - item_balances.recognised_to_date
            else 0 end) as {{ rounded_money_type() }}) as deferred_balance,
        cast(sum(case when item_balances.is_billed = 0 then item_balances.recognised_to_date else 0 end)
            as {{ rounded_money_type() }}) as unbilled_balance
    from item_balances
    group by 1, 2, 3, 4, 5, 6, 7
    -- A key whose items are all billed and recognised has nothing more to say.
    having sum(item_balances.billed_amount) <> 0 or sum(item_balances.recognised_amount) <> 0
        or sum(case when item_balances.is_billed = 1 then item_balances.amount - item_balances.recognised_to_date
               else 0 end) <> 0
        or sum(case when item_balances.is_billed = 0 then item_balances.recognised_to_date else 0 end) <> 0
)

select * from final
