-- One row per month (up to the run's as_of), customer and currency with recurring revenue, as
-- computed now: the monthly recurring revenue (MRR) at the month's last day (docs/revenue.md).
-- It is the subscription fees of the invoice lines whose service covers that day, before
-- coupons and excluding taxes (a free trial's fee is none), at the full period's rate (a prorated first or last
-- period counts at the rate of a whole one) and brought to a month: weekly x 52 / 12,
-- quarterly / 3, semiannual / 6, yearly / 12. A day a credit note took back (termination,
-- upgrade of an in-advance plan) is not covered. Rounded once, per customer and month.
-- Coupons are left out: an invoice's coupon is spread over all its fees in proportion to their
-- amounts, so a subscription fee's share of it moves with the usage billed beside it, which
-- would show as expansion and contraction of MRR with no change of plan.
with lines as (
    select * from {{ ref('fct_invoice_lines') }}
    where fee_kind = 'subscription'
),

invoices as (
    select * from {{ ref('fct_invoices') }}
),

plans as (
    select * from {{ ref('stg_catalog__plans') }}
),

credit_notes as (
    select * from {{ ref('fct_credit_notes') }}
    where status <> 'voided'
        and reason in ('termination', 'upgrade')
),

currencies as (
    select * from {{ ref('currencies') }}
),

subscription_fees as (
    select lines.*
    from lines
    inner join invoices
        on lines.invoice_id = invoices.invoice_id
    where invoices.status <> 'voided'
        and lines.proration_factor > 0
        and lines.amount <> 0
),

months as (
    select calendar.month_start, calendar.month_end
    from {{ calendar_months('subscription_fees', 'subscription_fees.service_period_start') }} as calendar
),

covering_fees as (
    select
        months.month_start,
        subscription_fees.customer_id,
        subscription_fees.currency,
        subscription_fees.invoice_line_id,
        -- The whole period's fee from the precise (unrounded) prorated one.
        {{ divide_exactly('subscription_fees.precise_amount', 'subscription_fees.proration_factor') }} as period_amount,
        plans.billing_interval
    from subscription_fees
    inner join months
        on subscription_fees.service_period_start <= months.month_end
        and subscription_fees.service_period_end >= months.month_end
    inner join plans
        on subscription_fees.plan_code = plans.plan_code
    left join credit_notes
        on subscription_fees.subscription_id = credit_notes.subscription_id
        and credit_notes.service_period_start <= months.month_end
        and credit_notes.service_period_end >= months.month_end
    where credit_notes.credit_note_id is null
),

monthly_amounts as (
    select
        covering_fees.*,
        case covering_fees.billing_interval
            when 'weekly' then {{ divide_exactly('covering_fees.period_amount * 52', '12') }}
            when 'quarterly' then {{ divide_exactly('covering_fees.period_amount', '3') }}
            when 'semiannual' then {{ divide_exactly('covering_fees.period_amount', '6') }}
            when 'yearly' then {{ divide_exactly('covering_fees.period_amount', '12') }}
            else {{ to_precise_money('covering_fees.period_amount') }}
        end as monthly_amount
    from covering_fees
),

final as (
    select
        monthly_amounts.month_start,
        monthly_amounts.customer_id,
        monthly_amounts.currency,
        {{ round_money('sum(monthly_amounts.monthly_amount)', 'currencies.minor_unit') }} as mrr,
        count(*) as subscription_fee_count
    from monthly_amounts
    inner join currencies
        on monthly_amounts.currency = currencies.currency_code
    group by monthly_amounts.month_start, monthly_amounts.customer_id, monthly_amounts.currency,
        currencies.minor_unit
)

select * from final
