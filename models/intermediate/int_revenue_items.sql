-- One row per item of revenue (docs/revenue.md), excluding taxes, in whole minor units, with
-- when it is billed and how it is recognised:
-- - an invoice line (not voided): its amount net of coupons and of what progressive billing
--   already invoiced (its taxable amount). The lines' precise amounts are rounded here, the
--   invoice's largest line taking the rounding difference, so an invoice's items add up to its
--   subtotal excluding taxes exactly. A purchase of prepaid credits is not revenue: it is a
--   prepayment, spent on invoices whose lines are the revenue, and revenue as breakage when it
--   expires unspent.
-- - a credit note (not voided): minus its amount excluding taxes.
-- - granted credits spent: minus their share of the revenue of the invoice they paid, spread
--   over its lines and recognised with them (free credits are a discount; a wallet spends its
--   granted credits first).
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
        {{ revenue_stream('revenue_lines.fee_kind') }} as revenue_stream,
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

-- A manual credit note gives back parts of lines (ledger.credit_note_items): one item per
-- line, in that line's stream; the largest takes what the items leave of the note's amount.
manual_note_lines as (
    select
        credit_notes.credit_note_id,
        credit_notes.amount as note_amount,
        items.credit_note_item_id,
        items.amount as item_amount,
        credited.fee_kind,
        credited.plan_code,
        credited.metric_code,
        row_number() over (
            partition by credit_notes.credit_note_id order by abs(items.amount) desc, items.credit_note_item_id
        ) as size_rank,
        sum(items.amount) over (partition by credit_notes.credit_note_id) as items_amount
    from credit_notes
    inner join {{ source('ledger', 'credit_note_items') }} as items
        on credit_notes.credit_note_id = items.credit_note_id
    left join lines as credited
        on items.invoice_line_id = credited.invoice_line_id
    where credit_notes.status <> 'voided'
),

note_items as (
    select
        credit_notes.credit_note_id as revenue_item_id,
        'credit_note' as source_kind,
        case
            when credit_notes.reason in ('termination', 'upgrade') then 'subscription'
            when credit_notes.reason = 'progressive_billing_overbilled' then 'usage'
            when corrected.fee_kind is not null then {{ revenue_stream('corrected.fee_kind') }}
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
    left join (select distinct credit_note_id from manual_note_lines) as manual
        on credit_notes.credit_note_id = manual.credit_note_id
    where credit_notes.status <> 'voided'
        and manual.credit_note_id is null
    union all
    select
        {{ dbt.hash("'credit_note_item|' || manual_note_lines.credit_note_item_id") }} as revenue_item_id,
        'credit_note' as source_kind,
        case when manual_note_lines.fee_kind is null then 'credit_note'
            else {{ revenue_stream('manual_note_lines.fee_kind') }} end as revenue_stream,
        'point_in_time' as recognition,
        credit_notes.customer_id,
        credit_notes.currency,
        manual_note_lines.plan_code,
        manual_note_lines.metric_code,
        credit_notes.credit_note_id as document_id,
        credit_notes.credit_note_number as document_number,
        cast(null as {{ dbt.type_string() }}) as invoice_line_id,
        credit_notes.issuing_date as recognition_start,
        credit_notes.issuing_date as recognition_end,
        case when credit_notes.status = 'finalized' then credit_notes.issuing_date end as billed_on,
        cast(-(manual_note_lines.item_amount + case when manual_note_lines.size_rank = 1
            then manual_note_lines.note_amount - manual_note_lines.items_amount else 0 end)
            as {{ rounded_money_type() }}) as amount
    from manual_note_lines
    inner join credit_notes
        on manual_note_lines.credit_note_id = credit_notes.credit_note_id
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

-- Granted (free) credits that paid an invoice are a discount: the invoice's revenue is reduced
-- by their share of it (granted spent x subtotal excluding / including taxes, rounded once),
-- spread over its lines in proportion to their amounts (the largest takes the rounding
-- difference), each share recognised on its line's schedule, in its line's stream.
granted_per_invoice as (
    select
        invoices.invoice_id,
        invoices.status as invoice_status,
        {{ round_money(to_precise_money('sum(spendings.granted_spent_amount)') ~ ' * '
                       ~ exact_ratio('invoices.subtotal_excluding_taxes', 'invoices.subtotal_including_taxes'),
                       'currencies.minor_unit') }} as granted_amount,
        currencies.minor_unit
    from spendings
    inner join invoices
        on spendings.invoice_id = invoices.invoice_id
    inner join currencies
        on invoices.currency = currencies.currency_code
    where spendings.transaction_type = 'spent'
        and spendings.granted_spent_amount > 0
        and invoices.status <> 'voided'
        and invoices.subtotal_including_taxes <> 0
    group by invoices.invoice_id, invoices.status, invoices.subtotal_excluding_taxes,
        invoices.subtotal_including_taxes, currencies.minor_unit
),

granted_line_weights as (
    select
        line_items.*,
        granted_per_invoice.granted_amount,
        granted_per_invoice.minor_unit,
        sum(line_items.amount) over (partition by line_items.document_id) as invoice_amount,
        row_number() over (
            partition by line_items.document_id order by line_items.amount desc, line_items.revenue_item_id
        ) as size_rank
    from line_items
    inner join granted_per_invoice
        on line_items.document_id = granted_per_invoice.invoice_id
    where line_items.amount > 0
),

granted_line_shares as (
    select
        granted_line_weights.*,
        {{ round_money(to_precise_money('granted_line_weights.granted_amount') ~ ' * '
                       ~ exact_ratio('granted_line_weights.amount', 'granted_line_weights.invoice_amount'),
                       'granted_line_weights.minor_unit') }} as rounded_share
    from granted_line_weights
),

granted_items as (
    select
        {{ dbt.hash("'granted|' || granted_line_shares.revenue_item_id") }} as revenue_item_id,
        'granted_credits' as source_kind,
        granted_line_shares.revenue_stream,
        granted_line_shares.recognition,
        granted_line_shares.customer_id,
        granted_line_shares.currency,
        granted_line_shares.plan_code,
        granted_line_shares.metric_code,
        granted_line_shares.document_id,
        granted_line_shares.document_number,
        granted_line_shares.invoice_line_id,
        granted_line_shares.recognition_start,
        granted_line_shares.recognition_end,
        granted_line_shares.billed_on,
        cast(-(case when granted_line_shares.size_rank = 1
            then granted_line_shares.granted_amount
                - sum(granted_line_shares.rounded_share) over (partition by granted_line_shares.document_id)
                + granted_line_shares.rounded_share
            else granted_line_shares.rounded_share end) as {{ rounded_money_type() }}) as amount
    from granted_line_shares
),

-- Per expired wallet: what it lost, and the purchased credits it still held (so the granted
-- ones expire first, as they are spent first).
expired as (
    select wallet_id, transaction_at as expired_at, -amount as expired_amount
    from wallet_transactions
    where transaction_type = 'expired'
        and status = 'settled'
),

purchased_before_expiry as (
    select expired.wallet_id, sum(credited.amount) as purchased_amount
    from expired
    inner join wallet_transactions as credited
        on expired.wallet_id = credited.wallet_id
        and credited.transaction_type = 'purchased'
        and credited.transaction_at < expired.expired_at
    group by 1
),

purchased_spent_before_expiry as (
    select expired.wallet_id, max(purchased_spent.purchased_spent_to_date) as purchased_spent_amount
    from expired
    inner join purchased_spent
        on expired.wallet_id = purchased_spent.wallet_id
        and purchased_spent.transaction_at < expired.expired_at
    group by 1
),

expiries as (
    select
        expired.wallet_id,
        expired.expired_amount,
        coalesce(purchased_before_expiry.purchased_amount, 0)
            - coalesce(purchased_spent_before_expiry.purchased_spent_amount, 0) as purchased_left_amount
    from expired
    left join purchased_before_expiry
        on expired.wallet_id = purchased_before_expiry.wallet_id
    left join purchased_spent_before_expiry
        on expired.wallet_id = purchased_spent_before_expiry.wallet_id
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
