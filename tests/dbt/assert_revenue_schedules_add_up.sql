{{ config(meta={'dagster': {'ref': {'name': 'fct_revenue_recognition'}}}) }}
-- Every item of revenue is recognised exactly once in all: its days add up to its amount. An
-- item of zero has no schedule, and nothing is scheduled for an item that is not there.
with items as (
    select * from {{ ref('int_revenue_items') }}
    where amount <> 0
),

schedules as (
    select revenue_item_id, sum(amount) as scheduled_amount, count(*) as days
    from {{ ref('fct_revenue_recognition') }}
    group by 1
)

select
    coalesce(items.revenue_item_id, schedules.revenue_item_id) as revenue_item_id,
    items.amount,
    schedules.scheduled_amount
from items
full outer join schedules
    on items.revenue_item_id = schedules.revenue_item_id
where items.revenue_item_id is null
    or schedules.revenue_item_id is null
    or schedules.scheduled_amount <> items.amount
