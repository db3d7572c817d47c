-- One row per month, customer and currency whose monthly recurring revenue (int_mrr_monthly)
-- is not zero in the month or the month before: its MRR and ARR (12 x MRR) at the month's last
-- day, and the movement from the month before (docs/revenue.md):
-- new (from zero, the customer never had any), reactivation (from zero, had some before, in
-- any currency), expansion (up),
-- contraction (down, not to zero), churn (to zero), unchanged.
-- A closed month reads as it was locked (ledger.closed_mrr); the first open month moves from
-- the locked figure, so a correction to a closed month shows as a movement of the open one.
with live as (
    select * from {{ ref('int_mrr_monthly') }}
),

locked as (
    select * from {{ source('ledger', 'closed_mrr') }}
),

last_close as (
    select max(month_start) as month_start from {{ source('ledger', 'month_closes') }}
),

reported as (
    select locked.month_start, locked.customer_id, locked.currency, locked.mrr
    from locked
    union all
    select live.month_start, live.customer_id, live.currency, live.mrr
    from live
    cross join last_close
    where last_close.month_start is null or live.month_start > last_close.month_start
),

-- Every month with MRR, and the month after it (where it may have churned).
customer_months as (
    select month_start, customer_id, currency from reported where mrr <> 0
    union
    select cast({{ dbt.dateadd('month', 1, 'reported.month_start') }} as date), reported.customer_id, reported.currency
    from reported
    where reported.mrr <> 0
        and reported.month_start < cast({{ dbt.date_trunc('month', as_of_timestamp()) }} as date)
),

-- A customer's first month with MRR in any currency: coming back in another currency is a
-- reactivation, not a new customer.
first_months as (
    select customer_id, min(month_start) as first_month
    from reported
    where mrr <> 0
    group by 1
),

movements as (
    select
        customer_months.month_start,
        customer_months.customer_id,
        customer_months.currency,
        coalesce(current_month.mrr, 0) as mrr,
        coalesce(previous_month.mrr, 0) as previous_mrr,
        case when first_months.first_month < customer_months.month_start then 1 else 0 end as had_mrr_before
    from customer_months
    inner join first_months
        on customer_months.customer_id = first_months.customer_id
    left join reported as current_month
        on customer_months.customer_id = current_month.customer_id
        and customer_months.currency = current_month.currency
        and customer_months.month_start = current_month.month_start
    left join reported as previous_month
        on customer_months.customer_id = previous_month.customer_id
        and customer_months.currency = previous_month.currency
        and cast({{ dbt.dateadd('month', 1, 'previous_month.month_start') }} as date) = customer_months.month_start
),

computed as (
    select
        movements.month_start,
        movements.customer_id,
        movements.currency,
        cast(movements.mrr as {{ rounded_money_type() }}) as mrr,
        cast(movements.mrr * 12 as {{ rounded_money_type() }}) as arr,
        cast(movements.previous_mrr as {{ rounded_money_type() }}) as previous_mrr,
        case
            when movements.previous_mrr = 0 and movements.mrr <> 0 and movements.had_mrr_before = 0 then 'new'
            when movements.previous_mrr = 0 and movements.mrr <> 0 then 'reactivation'
            when movements.previous_mrr <> 0 and movements.mrr = 0 then 'churn'
            when movements.mrr > movements.previous_mrr then 'expansion'
            when movements.mrr < movements.previous_mrr then 'contraction'
            else 'unchanged'
        end as movement,
        cast(movements.mrr - movements.previous_mrr as {{ rounded_money_type() }}) as net_change
    from movements
),

final as (
    select
        computed.month_start,
        computed.customer_id,
        computed.currency,
        computed.mrr,
        computed.arr,
        computed.previous_mrr,
        computed.movement,
        {% for kind in ['new', 'expansion', 'contraction', 'churn', 'reactivation'] -%}
        cast(case when computed.movement = '{{ kind }}' then computed.net_change else 0 end
            as {{ rounded_money_type() }}) as {{ kind }}_mrr,
        {% endfor -%}
        computed.net_change,
        false as is_closed_month
    from computed
    cross join last_close
    where last_close.month_start is null or computed.month_start > last_close.month_start
    union all
    select locked.*, true as is_closed_month
    from locked
)

select * from final
