-- One row per check at which a wallet's threshold top-up rule adds credits, up to the run's
-- as_of (docs/invoice-amounts.md).
--
-- The rule is checked when the wallet opens, at every invoice it pays (before the invoice draws
-- on it) and at every local midnight at which the customer's usage to date is measured
-- (int_wallet_ongoing_usage); also at credits and where a usage interval ends, which can only
-- raise the balance. When the ongoing balance then (credits so far, less what invoices
-- so far asked of the wallet, less the usage not yet invoiced) is at or under threshold_credits,
-- the rule adds as many top-ups as bring it above the threshold, in one purchase or grant.
--
-- Such a wallet pays first among the customer's wallets (the catalog checks), so what each
-- invoice asks of it is known without it: the whole amount due, or, when the wallet is
-- limited, its lines' rounded down (int_invoice_wallet_credits' first step). And as every
-- invoice is a check that leaves the balance above the threshold (zero or more), the wallet
-- always pays all it is asked: with B(c) the ongoing balance at check c without these top-ups,
-- the number of top-ups added by c is the running maximum over the checks of
-- floor((threshold - B) / top-up) + 1 where B <= threshold. Sums, a running maximum, no
-- recursion.
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

scheduled_credits as (
    select * from {{ ref('int_wallet_scheduled_credits') }}
),

-- What each invoice the wallet pays asks of it.
invoice_demands as (
    select * from {{ ref('int_threshold_wallet_invoice_demands') }}
),

ongoing_usage as (
    select * from {{ ref('int_wallet_ongoing_usage') }}
),

threshold_wallets as (
    select
        wallets.wallet_id,
        wallets.customer_id,
        wallets.started_at,
        wallets.expires_at,
        rules.position,
        rules.credit_kind,
        rules.credits as top_up_credits,
        {{ to_precise_money('rules.threshold_credits * wallets.rate_amount') }} as threshold_amount,
        {{ to_precise_money('rules.credits * wallets.rate_amount') }} as top_up_amount
    from wallets
    inner join rules
        on wallets.wallet_id = rules.wallet_id
),

-- The ongoing usage each wallet counts: what it may pay, unless the usage's line is invoiced
-- after the wallet expires (then it is not its concern).
wallet_usage as (
    select
        threshold_wallets.wallet_id,
        ongoing_usage.valid_from_at,
        ongoing_usage.valid_until_at,
        ongoing_usage.ongoing_amount
    from threshold_wallets
    inner join ongoing_usage
        on threshold_wallets.customer_id = ongoing_usage.customer_id
    where (threshold_wallets.expires_at is null or ongoing_usage.invoiced_at < threshold_wallets.expires_at)
        and {{ wallet_may_pay('wallet_limits', 'threshold_wallets.wallet_id', 'ongoing_usage.fee_kind',
                              'ongoing_usage.metric_code') }}
),

-- Everything that moves the ongoing balance, signed; usage counts from its checkpoint until
-- its line is invoiced (then the invoice asks for it).
movements as (
    select scheduled_credits.wallet_id, scheduled_credits.credited_at as moved_at, scheduled_credits.amount as change_amount
    from scheduled_credits
    where scheduled_credits.wallet_id in (select threshold_wallets.wallet_id from threshold_wallets)
    union all
    select invoice_demands.wallet_id, invoice_demands.invoice_at, -invoice_demands.demand_amount
    from invoice_demands
    union all
    select wallet_usage.wallet_id, wallet_usage.valid_from_at, -wallet_usage.ongoing_amount
    from wallet_usage
    union all
    select wallet_usage.wallet_id, wallet_usage.valid_until_at, wallet_usage.ongoing_amount
    from wallet_usage
    union all
    -- The check when the wallet opens.
    select threshold_wallets.wallet_id, threshold_wallets.started_at, 0
    from threshold_wallets
),

running_balances as (
    select
        movements.wallet_id,
        movements.moved_at,
        sum(movements.change_amount) over (
            partition by movements.wallet_id
            order by movements.moved_at
            range between unbounded preceding and current row
        ) as balance_without_top_ups
    from movements
),

checks as (
    select distinct
        running_balances.wallet_id,
        running_balances.moved_at as checked_at,
        cast(running_balances.balance_without_top_ups as {{ precise_money_type() }}) as balance_without_top_ups
    from running_balances
    inner join threshold_wallets
        on running_balances.wallet_id = threshold_wallets.wallet_id
    where running_balances.moved_at >= threshold_wallets.started_at
        and (threshold_wallets.expires_at is null or running_balances.moved_at < threshold_wallets.expires_at)
        and running_balances.moved_at <= {{ as_of_timestamp() }}
),

-- floor((threshold - B) / top-up), exactly: the quotient is rounded to 12 decimals, then
-- corrected against the product.
shortfalls as (
    select
        checks.*,
        threshold_wallets.threshold_amount,
        threshold_wallets.top_up_amount,
        case when checks.balance_without_top_ups <= threshold_wallets.threshold_amount
            then floor({{ exact_ratio('threshold_wallets.threshold_amount - checks.balance_without_top_ups',
                                      'threshold_wallets.top_up_amount') }})
        end as estimated_steps
    from checks
    inner join threshold_wallets
        on checks.wallet_id = threshold_wallets.wallet_id
),

needed as (
    select
        shortfalls.*,
        case
            when shortfalls.estimated_steps is null then 0
            when shortfalls.estimated_steps * shortfalls.top_up_amount
                    > shortfalls.threshold_amount - shortfalls.balance_without_top_ups
                then shortfalls.estimated_steps
            else shortfalls.estimated_steps + 1
        end as top_ups_needed
    from shortfalls
),

added_to_date as (
    select
        needed.*,
        max(needed.top_ups_needed) over (
            partition by needed.wallet_id
            order by needed.checked_at
            rows between unbounded preceding and current row
        ) as top_ups_to_date
    from needed
),

added as (
    select
        added_to_date.*,
        coalesce(lag(added_to_date.top_ups_to_date) over (
            partition by added_to_date.wallet_id order by added_to_date.checked_at
        ), 0) as top_ups_before
    from added_to_date
),

final as (
    select
        added.wallet_id,
        threshold_wallets.customer_id,
        threshold_wallets.position,
        added.checked_at as credited_at,
        threshold_wallets.credit_kind,
        cast(added.top_ups_to_date - added.top_ups_before as integer) as top_up_count,
        cast(added.top_ups_to_date as integer) as top_ups_to_date,
        {{ to_precise_money('(added.top_ups_to_date - added.top_ups_before) * threshold_wallets.top_up_credits') }}
            as credits,
        {{ to_precise_money('(added.top_ups_to_date - added.top_ups_before) * threshold_wallets.top_up_amount') }}
            as amount,
        added.threshold_amount,
        -- The ongoing balance that triggered it (earlier threshold top-ups included).
        {{ to_precise_money('added.balance_without_top_ups + added.top_ups_before * threshold_wallets.top_up_amount') }}
            as ongoing_balance_before_amount
    from added
    inner join threshold_wallets
        on added.wallet_id = threshold_wallets.wallet_id
    where added.top_ups_to_date > added.top_ups_before
)

select * from final
