-- One row per invoice that a wallet with a threshold top-up may pay (issued from its opening
-- until its expiry): what the invoice asks of it (docs/invoice-amounts.md). Such a wallet pays
-- first among the customer's wallets (the catalog checks), so this is int_invoice_wallet_credits'
-- first step: the invoice's whole amount due, or, for a limited wallet, its lines' (with their
-- taxes) rounded down, at most the amount due.
with wallets as (
    select * from {{ ref('stg_catalog__wallets') }}
),

wallet_limits as (
    select * from {{ ref('stg_catalog__wallet_limits') }}
),

rules as (
    select * from {{ ref('stg_catalog__wallet_top_ups') }}
    where threshold_credits is not null
),

line_totals as (
    select * from {{ ref('int_invoice_line_amounts_due') }}
),

threshold_wallets as (
    select wallets.*
    from wallets
    where wallets.wallet_id in (select rules.wallet_id from rules)
),

limited_wallets as (
    select distinct wallet_limits.wallet_id
    from wallet_limits
),

invoices as (
    select distinct
        line_totals.invoice_id,
        line_totals.customer_id,
        line_totals.invoice_at,
        line_totals.invoice_total
    from line_totals
),

wallet_invoices as (
    select
        threshold_wallets.wallet_id,
        threshold_wallets.customer_id,
        case when limited_wallets.wallet_id is null then 0 else 1 end as is_limited,
        invoices.invoice_id,
        invoices.invoice_at,
        invoices.invoice_total
    from threshold_wallets
    inner join invoices
        on threshold_wallets.customer_id = invoices.customer_id
        and invoices.invoice_at >= threshold_wallets.started_at
        and (threshold_wallets.expires_at is null or invoices.invoice_at < threshold_wallets.expires_at)
    left join limited_wallets
        on threshold_wallets.wallet_id = limited_wallets.wallet_id
),

payable_lines as (
    select
        threshold_wallets.wallet_id,
        line_totals.invoice_id,
        line_totals.minor_unit,
        line_totals.line_total
    from threshold_wallets
    inner join line_totals
        on threshold_wallets.customer_id = line_totals.customer_id
    where line_totals.line_total > 0
        and {{ wallet_may_pay('wallet_limits', 'threshold_wallets.wallet_id', 'line_totals.fee_kind',
                              'line_totals.metric_code') }}
),

payable as (
    select
        payable_lines.wallet_id,
        payable_lines.invoice_id,
        {{ floor_money('sum(payable_lines.line_total)', 'payable_lines.minor_unit') }} as payable_amount
    from payable_lines
    group by payable_lines.wallet_id, payable_lines.invoice_id, payable_lines.minor_unit
),

-- A finalised invoice asks what the ledger says the wallet paid (a voided one nothing): the
-- balance later invoices see is the one the issued invoices left.
issued_invoices as (
    select * from {{ ref('stg_ledger__invoices') }}
),

issued_credits as (
    select * from {{ source('ledger', 'invoice_wallet_credits') }}
),

final as (
    select
        wallet_invoices.wallet_id,
        wallet_invoices.customer_id,
        wallet_invoices.invoice_id,
        wallet_invoices.invoice_at,
        wallet_invoices.invoice_total,
        cast(
            case
                when issued_invoices.status = 'voided' then 0
                when issued_invoices.invoice_id is not null then coalesce(issued_credits.credit_amount, 0)
                when wallet_invoices.is_limited = 1 and coalesce(payable.payable_amount, 0) < wallet_invoices.invoice_total
                    then coalesce(payable.payable_amount, 0)
                else wallet_invoices.invoice_total
            end
            as {{ rounded_money_type() }}
        ) as demand_amount
    from wallet_invoices
    left join payable
        on wallet_invoices.wallet_id = payable.wallet_id
        and wallet_invoices.invoice_id = payable.invoice_id
    left join issued_invoices
        on wallet_invoices.invoice_id = issued_invoices.invoice_id
    left join issued_credits
        on wallet_invoices.invoice_id = issued_credits.invoice_id
        and wallet_invoices.wallet_id = issued_credits.wallet_id
)

select * from final
