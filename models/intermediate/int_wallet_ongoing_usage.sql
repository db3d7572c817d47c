-- One row per charge line and checkpoint of a customer whose wallet tops up under a threshold
-- (int_wallet_threshold_top_ups): the usage priced so far that no invoice has billed yet, from
-- the checkpoint until the next one or until the line is invoiced (docs/invoice-amounts.md).
--
-- The usage to date is progressive billing's (int_usage_checkpoints, local midnights): each
-- line's amount rounded (nothing while below zero), less what progressive invoices issued by
-- then billed of it (usage_amount), with the taxes the line bears on its invoice, rounded
-- (ongoing_amount). Coupons apply when it is invoiced.
with checkpoints as (
    select * from {{ ref('int_usage_checkpoints') }}
),

billing_periods as (
    select * from {{ ref('int_billing_periods') }}
),

charges as (
    select * from {{ ref('stg_catalog__charges') }}
),

fees as (
    select * from {{ ref('int_invoice_fees') }}
),

billed_early as (
    select * from {{ ref('int_progressive_billing_fees') }}
),

line_taxes as (
    select * from {{ ref('int_invoice_line_taxes') }}
),

top_up_customers as (
    select distinct wallets.customer_id
    from {{ ref('stg_catalog__wallets') }} as wallets
    inner join {{ ref('stg_catalog__wallet_top_ups') }} as top_ups
        on wallets.wallet_id = top_ups.wallet_id
    where top_ups.threshold_credits is not null
),

line_checkpoints as (
    select
        checkpoints.invoice_line_id,
        billing_periods.customer_id,
        charges.metric_code,
        checkpoints.checkpoint_at,
        billing_periods.service_end_at,
        billing_periods.minor_unit,
        case when checkpoints.precise_amount_to_date > 0
            then {{ round_money('checkpoints.precise_amount_to_date', 'billing_periods.minor_unit') }}
            else 0 end as usage_to_date_amount
    from checkpoints
    inner join billing_periods
        on checkpoints.billing_period_id = billing_periods.billing_period_id
    inner join charges
        on checkpoints.charge_id = charges.charge_id
    where billing_periods.customer_id in (select top_up_customers.customer_id from top_up_customers)
),

billed_by_then as (
    select
        line_checkpoints.invoice_line_id,
        line_checkpoints.checkpoint_at,
        coalesce(sum(billed_early.amount), 0) as billed_amount
    from line_checkpoints
    left join billed_early
        on line_checkpoints.invoice_line_id = billed_early.period_invoice_line_id
        and billed_early.invoice_at <= line_checkpoints.checkpoint_at
    group by 1, 2
),

unbilled as (
    select
        line_checkpoints.invoice_line_id,
        line_checkpoints.customer_id,
        line_checkpoints.metric_code,
        line_checkpoints.minor_unit,
        line_checkpoints.checkpoint_at as valid_from_at,
        coalesce(
            lead(line_checkpoints.checkpoint_at) over (
                partition by line_checkpoints.invoice_line_id order by line_checkpoints.checkpoint_at
            ),
            fees.invoice_at,
            line_checkpoints.service_end_at
        ) as valid_until_at,
        coalesce(fees.invoice_at, line_checkpoints.service_end_at) as invoiced_at,
        case when line_checkpoints.usage_to_date_amount > billed_by_then.billed_amount
            then line_checkpoints.usage_to_date_amount - billed_by_then.billed_amount
            else 0 end as usage_amount
    from line_checkpoints
    inner join billed_by_then
        on line_checkpoints.invoice_line_id = billed_by_then.invoice_line_id
        and line_checkpoints.checkpoint_at = billed_by_then.checkpoint_at
    left join fees
        on line_checkpoints.invoice_line_id = fees.invoice_line_id
),

taxed as (
    select
        unbilled.invoice_line_id,
        unbilled.valid_from_at,
        sum({{ percent_of('unbilled.usage_amount', 'line_taxes.tax_rate') }}) as tax_amount
    from unbilled
    inner join line_taxes
        on unbilled.invoice_line_id = line_taxes.invoice_line_id
    group by 1, 2
),

final as (
    select
        unbilled.invoice_line_id,
        unbilled.customer_id,
        'charge' as fee_kind,
        unbilled.metric_code,
        unbilled.valid_from_at,
        unbilled.valid_until_at,
        -- When the line is invoiced (its period's invoice).
        unbilled.invoiced_at,
        cast(unbilled.usage_amount as {{ rounded_money_type() }}) as usage_amount,
        {{ round_money('unbilled.usage_amount + coalesce(taxed.tax_amount, 0)', 'unbilled.minor_unit') }}
            as ongoing_amount
    from unbilled
    left join taxed
        on unbilled.invoice_line_id = taxed.invoice_line_id
        and unbilled.valid_from_at = taxed.valid_from_at
)

select * from final
