-- One row per item of revenue (docs/revenue.md), excluding taxes, in whole minor units, with
-- when it is billed and how it is recognised:
-- - an invoice line (not voided): its amount net of coupons and of what progressive billing
--   already invoiced (its taxable amount). The lines' precise amounts are rounded here, the
--   invoice's largest line taking the rounding difference, so an invoice's items add up to its
--   subtotal excluding taxes exactly. A purchase of prepaid credits is not revenue: it is a
--   prepayment, spent on invoices whose lines are the revenue, and revenue as breakage when it
--   expires unspent.
-- - a credit note (not voided): minus its amount excluding taxes.
-- - granted credits spent: minus their share of the revenue of the invoice they paid (free
--   credits are a discount; a wallet spends its granted credits first).
-- - breakage: the purchased credits a wallet still held when it expired.
-- Billed: on the invoice's (credit note's) issuing date once it is finalised, on the expiry date
-- for breakage; not yet (null) while the invoice is a draft or in its grace period.
-- Recognised: `ratably` over the service days (subscription fees, minimum commitments, credit
-- notes for unused days), `consumption` on the days of the line's events (usage; evenly over the
-- service days when it has none), or `point_in_time` on one day.
with lines as (
    select * from {{ ref('fct_invoice_lines') }}
),

invoices as (
    select * from {{ ref('fct_invoices') }}
),

credit_notes as (
    select * from {{ ref('fct_credit_notes') }}
),

wallet_transactions as (
    select * from {{ ref('fct_wallet_transactions') }}
),

wallets as (
    select * from {{ ref('stg_catalog__wallets') }}
),

currencies as (
    select * from {{ ref('currencies') }}
),

revenue_lines as (
    select
        lines.*,
        invoices.status as invoice_status,
        invoices.invoice_number,
        invoices.issuing_date,
        invoices.subtotal_excluding_taxes,
        {{ round_money('lines.taxable_amount', 'currencies.minor_unit') }} as rounded_amount,
        row_number() over (
            partition by lines.invoice_id order by abs(lines.taxable_amount) desc, lines.invoice_line_id
        ) as size_rank
    from lines
    inner join invoices
        on lines.invoice_id = invoices.invoice_id
    inner join currencies
        on lines.currency = currencies.currency_code
    where invoices.status <> 'voided'
        and lines.fee_kind <> 'credit_purchase'
),

line_items as (
    select
        revenue_lines.invoice_line_id as revenue_item_id,
        'invoice_line' as source_kind,
        case revenue_lines.fee_kind
            when 'subscription' then 'subscription'
            when 'charge' then 'usage'
            when 'true_up' then 'minimum_commitment'
            else 'one_off'
        end as revenue_stream,
        case revenue_lines.fee_kind
            when 'subscription' then 'ratably'
            when 'true_up' then 'ratably'
            when 'charge' then 'consumption'
            else 'point_in_time'
        end as recognition,
        revenue_lines.customer_id,
        revenue_lines.currency,
        revenue_lines.plan_code,
        revenue_lines.metric_code,
        revenue_lines.invoice_id as document_id,
        revenue_lines.invoice_number as document_number,
        revenue_lines.invoice_line_id,
        revenue_lines.service_period_start as recognition_start,
        revenue_lines.service_period_end as recognition_end,
        case when revenue_lines.invoice_status = 'finalized' then revenue_lines.issuing_date end as billed_on,
        cast(case
            when revenue_lines.size_rank = 1 then revenue_lines.subtotal_excluding_taxes
                - sum(revenue_lines.rounded_amount) over (partition by revenue_lines.invoice_id)
                + revenue_lines.rounded_amount
            else revenue_lines.rounded_amount
        end as {{ rounded_money_type() }}) as amount
    from revenue_lines
),

note_items as (
    select
        credit_notes.credit_note_id as revenue_item_id,
        'credit_note' as source_kind,
        case
            when credit_notes.reason in ('termination', 'upgrade') then 'subscription'
            when corrected.fee_kind = 'charge' then 'usage'
            when corrected.fee_kind = 'true_up' then 'minimum_commitment'
            else 'credit_note'
        end as revenue_stream,
        -- Unused days are taken back over those days; anything else on the day it is issued.
        case when credit_notes.reason in ('termination', 'upgrade') then 'ratably' else 'point_in_time' end
            as recognition,
        credit_notes.customer_id,
        credit_notes.currency,
        coalesce(credit_notes.plan_code, corrected.plan_code) as plan_code,
        corrected.metric_code,
        credit_notes.credit_note_id as document_id,
        credit_notes.credit_note_number as document_number,
        credit_notes.corrected_invoice_line_id as invoice_line_id,
        case when credit_notes.reason in ('termination', 'upgrade') then credit_notes.service_period_start
            else credit_notes.issuing_date end as recognition_start,
        case when credit_notes.reason in ('termination', 'upgrade') then credit_notes.service_period_end
            else credit_notes.issuing_date end as recognition_end,
        case when credit_notes.status = 'finalized' then credit_notes.issuing_date end as billed_on,
        cast(-credit_notes.amount as {{ rounded_money_type() }}) as amount
    from credit_notes
    left join lines as corrected
        on credit_notes.corrected_invoice_line_id = corrected.invoice_line_id
    where credit_notes.status <> 'voided'
),

-- A wallet's credits are spent granted first: what a spending takes of the purchased credits
-- is the growth of the running maximum of (spent - granted) to date (a deficit only purchased
-- credits can have covered).
wallet_movements as (
    select
        wallet_transactions.*,
        sum(case when wallet_transactions.transaction_type = 'spent' then -wallet_transactions.amount else 0 end)
            over (partition by wallet_transactions.wallet_id
                  order by wallet_transactions.transaction_at,
                      case when wallet_transactions.transaction_type = 'spent' then 2 else 1 end,
                      wallet_transactions.wallet_transaction_id
                  rows between unbounded preceding and current row) as spent_to_date,
        sum(case when wallet_transactions.transaction_type = 'granted' then wallet_transactions.amount else 0 end)
            over (partition by wallet_transactions.wallet_id
                  order by wallet_transactions.transaction_at,
                      case when wallet_transactions.transaction_type = 'spent' then 2 else 1 end,
                      wallet_transactions.wallet_transaction_id
                  rows between unbounded preceding and current row) as granted_to_date
    from wallet_transactions
    where wallet_transactions.transaction_type in ('granted', 'spent')
),

purchased_spent as (
    select
        wallet_movements.*,
        max(case when wallet_movements.spent_to_date > wallet_movements.granted_to_date
                 then wallet_movements.spent_to_date - wallet_movements.granted_to_date else 0 end)
            over (partition by wallet_movements.wallet_id
                  order by wallet_movements.transaction_at,
                      case when wallet_movements.transaction_type = 'spent' then 2 else 1 end,
                      wallet_movements.wallet_transaction_id
                  rows between unbounded preceding and current row) as purchased_spent_to_date
    from wallet_movements
),

spendings as (
    select
        purchased_spent.*,
        -purchased_spent.amount - (purchased_spent.purchased_spent_to_date - coalesce(lag(
            purchased_spent.purchased_spent_to_date) over (
                partition by purchased_spent.wallet_id
                order by purchased_spent.transaction_at,
                    case when purchased_spent.transaction_type = 'spent' then 2 else 1 end,
                    purchased_spent.wallet_transaction_id), 0)) as granted_spent_amount
    from purchased_spent
),

-- Granted (free) credits that paid an invoice are a discount: its revenue is reduced by their
-- share of the invoice's revenue (granted spent x subtotal excluding / including taxes).
granted_items as (
    select
        {{ dbt.hash("'granted|' || spendings.wallet_transaction_id") }} as revenue_item_id,
        'granted_credits' as source_kind,
        'granted_credits' as revenue_stream,
        'point_in_time' as recognition,
        spendings.customer_id,
        spendings.currency,
        cast(null as {{ dbt.type_string() }}) as plan_code,
        cast(null as {{ dbt.type_string() }}) as metric_code,
        invoices.invoice_id as document_id,
        invoices.invoice_number as document_number,
        cast(null as {{ dbt.type_string() }}) as invoice_line_id,
        invoices.issuing_date as recognition_start,
        invoices.issuing_date as recognition_end,
        case when invoices.status = 'finalized' then invoices.issuing_date end as billed_on,
        cast(-{{ round_money(to_precise_money('spendings.granted_spent_amount') ~ ' * '
                             ~ exact_ratio('invoices.subtotal_excluding_taxes', 'invoices.subtotal_including_taxes'),
                             'currencies.minor_unit') }} as {{ rounded_money_type() }}) as amount
    from spendings
    inner join invoices
        on spendings.invoice_id = invoices.invoice_id
    inner join currencies
        on spendings.currency = currencies.currency_code
    where spendings.transaction_type = 'spent'
        and spendings.granted_spent_amount > 0
        and invoices.status <> 'voided'
        and invoices.subtotal_including_taxes <> 0
),

-- Per expired wallet: what it lost, and the purchased credits it still held (so the granted
-- ones expire first, as they are spent first).
expiries as (
    select
        wallet_transactions.wallet_id,
        -wallet_transactions.amount as expired_amount,
        coalesce((select sum(credited.amount) from wallet_transactions as credited
                  where credited.wallet_id = wallet_transactions.wallet_id
                      and credited.transaction_type = 'purchased'
                      and credited.transaction_at < wallet_transactions.transaction_at), 0)
        - coalesce((select max(purchased_spent.purchased_spent_to_date) from purchased_spent
                    where purchased_spent.wallet_id = wallet_transactions.wallet_id
                        and purchased_spent.transaction_at < wallet_transactions.transaction_at), 0)
            as purchased_left_amount
    from wallet_transactions
    where wallet_transactions.transaction_type = 'expired'
        and wallet_transactions.status = 'settled'
),

breakage_items as (
    select
        {{ dbt.hash("'breakage|' || wallets.wallet_id") }} as revenue_item_id,
        'wallet_expiry' as source_kind,
        'breakage' as revenue_stream,
        'point_in_time' as recognition,
        wallets.customer_id,
        wallets.currency,
        cast(null as {{ dbt.type_string() }}) as plan_code,
        cast(null as {{ dbt.type_string() }}) as metric_code,
        wallets.wallet_id as document_id,
        wallets.wallet_name as document_number,
        cast(null as {{ dbt.type_string() }}) as invoice_line_id,
        wallets.expiration_date as recognition_start,
        wallets.expiration_date as recognition_end,
        wallets.expiration_date as billed_on,
        cast(case when expiries.purchased_left_amount < expiries.expired_amount then expiries.purchased_left_amount
            else expiries.expired_amount end as {{ rounded_money_type() }}) as amount
    from expiries
    inner join wallets
        on expiries.wallet_id = wallets.wallet_id
    where expiries.purchased_left_amount > 0
),

final as (
    select * from line_items
    union all
    select * from note_items
    union all
    select * from granted_items
    union all
    select * from breakage_items
)

select * from final
