-- One row per month, customer and currency: what was billed (finalised invoices' total due,
-- taxes included) and collected (recorded payments) in the month, and what was outstanding at
-- its end. A closed month reads as it was locked; later changes to it (a void, a payment
-- recorded with an earlier date) are `prior_period_adjustment` rows of the first open month.
with live as (
    select * from {{ ref('int_billed_vs_collected') }}
),

locked as (
    select * from {{ source('ledger', 'closed_billed_vs_collected') }}
),

{{ figures_with_month_closes('live', 'locked', ['customer_id', 'currency'], ['billed_amount', 'collected_amount'],
                             ['outstanding_balance']) }}
