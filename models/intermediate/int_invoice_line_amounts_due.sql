-- One row per invoice line: what is left of the line and its invoice for prepaid credits
-- (wallets) once credit notes paid their part (docs/invoice-amounts.md, step 4). A credit
-- note's payment of an invoice is spread over its lines in proportion to what each owes, as
-- coupons spread (the lines' shares add up to the payment exactly).
with line_totals as (
    select * from {{ ref('int_invoice_line_totals') }}
),

invoice_credits as (
    select credit_note_credits.invoice_id, sum(credit_note_credits.credit_amount) as credit_amount
    from {{ ref('int_invoice_credit_note_credits') }} as credit_note_credits
    group by 1
),

weighted as (
    select
        line_totals.invoice_line_id,
        line_totals.invoice_id,
        invoice_credits.credit_amount,
        case when line_totals.line_total > 0 then line_totals.line_total else 0 end as weight,
        sum(case when line_totals.line_total > 0 then line_totals.line_total else 0 end) over (
            partition by line_totals.invoice_id
        ) as weight_total
    from line_totals
    inner join invoice_credits
        on line_totals.invoice_id = invoice_credits.invoice_id
),

line_shares as (
    select
        weighted.invoice_line_id,
        {{ spread_in_proportion('weighted.credit_amount', 'weighted.weight', 'weighted.weight_total',
                                'weighted.invoice_id', 'weighted.invoice_line_id') }} as line_credit_amount
    from weighted
),

final as (
    select
        line_totals.invoice_line_id,
        line_totals.invoice_id,
        line_totals.customer_id,
        line_totals.currency,
        line_totals.invoice_at,
        line_totals.minor_unit,
        line_totals.fee_kind,
        line_totals.metric_code,
        {{ to_precise_money('coalesce(line_shares.line_credit_amount, 0)') }} as credit_note_credit_amount,
        {{ to_precise_money('line_totals.line_total - coalesce(line_shares.line_credit_amount, 0)') }}
            as line_total,
        cast(line_totals.invoice_total - coalesce(invoice_credits.credit_amount, 0) as {{ rounded_money_type() }})
            as invoice_total
    from line_totals
    left join line_shares
        on line_totals.invoice_line_id = line_shares.invoice_line_id
    left join invoice_credits
        on line_totals.invoice_id = invoice_credits.invoice_id
)

select * from final
