-- One row per invoice line and wallet whose credits pay part of it (docs/invoice-amounts.md):
-- what the wallet paid on the invoice, and the line's share of it.
--
-- Credits are spent after tax. A wallet pays the customer's invoices issued from when it opened
-- until the end of its expiration date, in invoice order, as much as it can: its balance then
-- is everything credited up to the invoice's instant minus what earlier invoices took. A
-- wallet limited to fee kinds or metrics pays only those lines (with their taxes), rounded down
-- to the minor unit. A customer's wallets pay one after the other, by priority (then code);
-- purchases of credits are invoices of their own, never paid by credits.
--
-- A wallet's spending over its invoices is the greedy recurrence
--   spent_k = min(spent_{k-1} + demand_k, credited_k)
-- which has the closed form spent_k = S_k + min(0, min_{i<=k}(credited_i - S_i)), where S_k is
-- the running sum of demands: running sums and a running minimum, no recursion. The wallets
-- of a customer are unrolled in steps, as many as the customer with the most wallets holds
-- (macros/unrolled_steps.sql).
{%- set steps = unrolled_steps(ref('stg_catalog__wallets'), 'customer_id', 'max_wallets_per_customer') %}

with line_totals as (
    select * from {{ ref('int_invoice_line_amounts_due') }}
),

wallets as (
    select * from {{ ref('stg_catalog__wallets') }}
),

wallet_limits as (
    select * from {{ ref('stg_catalog__wallet_limits') }}
),

-- A finalised invoice takes from each wallet what the ledger says it took (a voided one
-- nothing, which gives it back): later invoices see the balance the issued ones left, whatever
-- a recomputation of the finalised invoices would say.
issued_invoices as (
    select * from {{ ref('stg_ledger__invoices') }}
),

issued_credits as (
    select * from {{ source('ledger', 'invoice_wallet_credits') }}
),

-- Transactions, interval top-ups and threshold top-ups.
wallet_credits as (
    select * from {{ ref('int_wallet_credits') }}
),

invoice_totals as (
    select distinct
        line_totals.invoice_id,
        line_totals.customer_id,
        line_totals.invoice_at,
        line_totals.minor_unit,
        line_totals.invoice_total
    from line_totals
),

limited_wallets as (
    select distinct wallet_limits.wallet_id
    from wallet_limits
),

ordered_wallets as (
    select
        wallets.*,
        case when limited_wallets.wallet_id is null then 0 else 1 end as is_limited,
        row_number() over (partition by wallets.customer_id order by wallets.priority, wallets.wallet_id)
            as wallet_rank
    from wallets
    left join limited_wallets
        on wallets.wallet_id = limited_wallets.wallet_id
),

-- The invoices each wallet may pay, with what was credited to it up to each invoice.
wallet_invoices as (
    select
        ordered_wallets.wallet_id,
        ordered_wallets.wallet_rank,
        ordered_wallets.is_limited,
        ordered_wallets.rate_amount,
        invoice_totals.invoice_id,
        invoice_totals.invoice_at,
        invoice_totals.minor_unit,
        coalesce(sum(wallet_credits.amount), 0) as credited_amount
    from ordered_wallets
    inner join invoice_totals
        on ordered_wallets.customer_id = invoice_totals.customer_id
        and invoice_totals.invoice_at >= ordered_wallets.started_at
        and (ordered_wallets.expires_at is null or invoice_totals.invoice_at < ordered_wallets.expires_at)
    left join wallet_credits
        on ordered_wallets.wallet_id = wallet_credits.wallet_id
        and wallet_credits.credited_at <= invoice_totals.invoice_at
    group by 1, 2, 3, 4, 5, 6, 7
),

wallet_lines as (
    select
        wallet_invoices.wallet_id,
        wallet_invoices.invoice_id,
        line_totals.invoice_line_id
    from wallet_invoices
    inner join line_totals
        on wallet_invoices.invoice_id = line_totals.invoice_id
    where {{ wallet_may_pay('wallet_limits', 'wallet_invoices.wallet_id', 'line_totals.fee_kind',
                            'line_totals.metric_code') }}
),

-- What is left of each line, and of its invoice, before the first wallet.
lines_0 as (
    select
        line_totals.invoice_line_id,
        line_totals.invoice_id,
        line_totals.invoice_at,
        line_totals.line_total as remaining_amount,
        line_totals.invoice_total as invoice_remaining_amount
    from line_totals
),

{#- Every step reads the previous one exactly once, one row per line, with window functions
    for what spans an invoice or a wallet's invoices (one line stands for its invoice): Spark
    inlines every common table expression into the statement that creates the table, so a
    step read twice would double the plan at every step (docs/engines.md). #}
{%- for step in range(1, steps + 1) %}

-- Wallet rank {{ step }}: what is left of each invoice and of the lines the wallet may pay.
bases_{{ step }} as (
    select
        previous.invoice_line_id,
        previous.invoice_id,
        previous.invoice_at,
        previous.remaining_amount,
        previous.invoice_remaining_amount as invoice_left_amount,
        wallet_invoices.wallet_id,
        wallet_invoices.wallet_rank,
        wallet_invoices.is_limited,
        wallet_invoices.rate_amount,
        wallet_invoices.minor_unit,
        wallet_invoices.credited_amount,
        issued_invoices.status as issued_status,
        issued_credits.credit_amount as issued_credit_amount,
        case when wallet_lines.invoice_line_id is null then 0 else 1 end as is_payable,
        case when wallet_lines.invoice_line_id is not null and previous.remaining_amount > 0
            then previous.remaining_amount else 0 end as line_left_amount,
        sum(case when wallet_lines.invoice_line_id is not null and previous.remaining_amount > 0
            then previous.remaining_amount else 0 end) over (partition by previous.invoice_id)
            as lines_left_amount,
        row_number() over (partition by previous.invoice_id order by previous.invoice_line_id)
            as invoice_line_number
    from lines_{{ step - 1 }} as previous
    left join wallet_invoices
        on previous.invoice_id = wallet_invoices.invoice_id
        and wallet_invoices.wallet_rank = {{ step }}
    left join wallet_lines
        on wallet_invoices.wallet_id = wallet_lines.wallet_id
        and previous.invoice_line_id = wallet_lines.invoice_line_id
    left join issued_invoices
        on wallet_invoices.invoice_id = issued_invoices.invoice_id
    left join issued_credits
        on wallet_invoices.invoice_id = issued_credits.invoice_id
        and wallet_invoices.wallet_id = issued_credits.wallet_id
),

demands_{{ step }} as (
    select
        bases_{{ step }}.*,
        -- An unlimited wallet may pay all that is left of the invoice; a limited one what is
        -- left of its lines, rounded down.
        case
            when bases_{{ step }}.is_limited = 0 then bases_{{ step }}.invoice_left_amount
            else {{ floor_money('bases_' ~ step ~ '.lines_left_amount', 'bases_' ~ step ~ '.minor_unit') }}
        end as eligible_amount
    from bases_{{ step }}
),

bounded_{{ step }} as (
    select
        demands_{{ step }}.*,
        case
            when demands_{{ step }}.wallet_id is null then null
            when demands_{{ step }}.issued_status = 'voided' then 0
            when demands_{{ step }}.issued_status is not null then coalesce(demands_{{ step }}.issued_credit_amount, 0)
            when demands_{{ step }}.eligible_amount < demands_{{ step }}.invoice_left_amount
                then demands_{{ step }}.eligible_amount
            else demands_{{ step }}.invoice_left_amount
        end as demand_amount
    from demands_{{ step }}
),

cumulative_{{ step }} as (
    select
        bounded_{{ step }}.*,
        sum(case when bounded_{{ step }}.invoice_line_number = 1 then bounded_{{ step }}.demand_amount end) over (
            partition by bounded_{{ step }}.wallet_id
            order by bounded_{{ step }}.invoice_at, bounded_{{ step }}.invoice_id
            range between unbounded preceding and current row
        ) as demanded_to_date
    from bounded_{{ step }}
),

spent_{{ step }} as (
    select
        cumulative_{{ step }}.*,
        cumulative_{{ step }}.demanded_to_date + case
            when min(cumulative_{{ step }}.credited_amount - cumulative_{{ step }}.demanded_to_date) over (
                partition by cumulative_{{ step }}.wallet_id
                order by cumulative_{{ step }}.invoice_at, cumulative_{{ step }}.invoice_id
                range between unbounded preceding and current row
            ) < 0
            then min(cumulative_{{ step }}.credited_amount - cumulative_{{ step }}.demanded_to_date) over (
                partition by cumulative_{{ step }}.wallet_id
                order by cumulative_{{ step }}.invoice_at, cumulative_{{ step }}.invoice_id
                range between unbounded preceding and current row
            )
            else 0
        end as spent_to_date
    from cumulative_{{ step }}
),

-- What the wallet had spent before the invoice, on the line that stands for it.
spent_before_{{ step }} as (
    select
        spent_{{ step }}.*,
        case when spent_{{ step }}.invoice_line_number = 1 then
            coalesce(lag(spent_{{ step }}.spent_to_date) over (
                partition by spent_{{ step }}.wallet_id,
                    case when spent_{{ step }}.invoice_line_number = 1 then 1 else 0 end
                order by spent_{{ step }}.invoice_at, spent_{{ step }}.invoice_id
            ), 0)
        end as spent_before_amount
    from spent_{{ step }}
),

paid_{{ step }} as (
    select
        spent_before_{{ step }}.*,
        cast(
            spent_before_{{ step }}.spent_to_date - max(spent_before_{{ step }}.spent_before_amount) over (
                partition by spent_before_{{ step }}.invoice_id
            )
            as {{ rounded_money_type() }}
        ) as credit_amount
    from spent_before_{{ step }}
),

-- Each line's share of the payment, in proportion to what is left of it, as coupons spread.
shares_{{ step }} as (
    select
        paid_{{ step }}.*,
        paid_{{ step }}.is_payable = 1 and paid_{{ step }}.credit_amount > 0 as is_paid,
        case when paid_{{ step }}.is_payable = 1 and paid_{{ step }}.credit_amount > 0 then
            {{ spread_in_proportion(
                'paid_' ~ step ~ '.credit_amount',
                'paid_' ~ step ~ '.line_left_amount',
                'paid_' ~ step ~ '.lines_left_amount',
                'paid_' ~ step ~ '.invoice_id, paid_' ~ step ~ '.is_payable',
                'paid_' ~ step ~ '.invoice_line_id') }}
        end as line_credit_amount
    from paid_{{ step }}
),

lines_{{ step }} as (
    select
        shares_{{ step }}.invoice_line_id,
        shares_{{ step }}.invoice_id,
        shares_{{ step }}.invoice_at,
        shares_{{ step }}.remaining_amount - coalesce(shares_{{ step }}.line_credit_amount, 0) as remaining_amount,
        shares_{{ step }}.invoice_left_amount - coalesce(shares_{{ step }}.credit_amount, 0)
            as invoice_remaining_amount
    from shares_{{ step }}
),
{%- endfor %}

every_share as (
    {%- for step in range(1, steps + 1) %}
    select
        shares_{{ step }}.invoice_line_id,
        shares_{{ step }}.invoice_id,
        shares_{{ step }}.wallet_id,
        shares_{{ step }}.wallet_rank,
        shares_{{ step }}.invoice_at,
        shares_{{ step }}.demand_amount,
        shares_{{ step }}.credited_amount,
        shares_{{ step }}.spent_to_date,
        shares_{{ step }}.credit_amount,
        shares_{{ step }}.rate_amount,
        shares_{{ step }}.line_credit_amount
    from shares_{{ step }}
    where shares_{{ step }}.is_paid
    {%- if not loop.last %}
    union all
    {%- endif %}
    {%- endfor %}
),

final as (
    select
        every_share.invoice_line_id,
        every_share.invoice_id,
        every_share.wallet_id,
        every_share.wallet_rank,
        every_share.invoice_at,
        every_share.demand_amount,
        every_share.credited_amount,
        every_share.spent_to_date,
        every_share.credit_amount,
        -- The wallet's balance when the invoice drew on it.
        cast(every_share.credited_amount - every_share.spent_to_date + every_share.credit_amount
             as {{ rounded_money_type() }}) as balance_before_amount,
        {{ divide_exactly('every_share.credit_amount', 'every_share.rate_amount') }} as credits,
        {{ to_precise_money('every_share.line_credit_amount') }} as line_credit_amount
    from every_share
)

select * from final
