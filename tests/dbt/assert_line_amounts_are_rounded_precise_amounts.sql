{{ config(meta={'dagster': {'ref': {'name': 'fct_invoice_lines'}}}) }}
-- The single rounding place. A failure means a line's amount is not its precise amount
-- rounded half-up to the currency's minor unit, or a standard charge's precise amount is not
-- quantity x unit price (in arrears; a progressive billing line is the rounded usage to date
-- less what earlier progressive invoices billed, not its units x price).
with lines as (
    select * from {{ ref('fct_invoice_lines') }}
),

currencies as (
    select * from {{ ref('currencies') }}
),

tiers as (
    select * from {{ ref('stg_catalog__charge_tiers') }}
)

select lines.invoice_line_id
from lines
inner join currencies on lines.currency = currencies.currency_code
left join tiers on lines.charge_id = tiers.charge_id and lines.charge_model = 'standard'
where lines.amount <> {{ round_money('lines.precise_amount', 'currencies.minor_unit') }}
    or (lines.fee_kind = 'charge' and lines.charge_model = 'standard'
        -- an in-advance line is the event's marginal amount, not quantity x price
        and lines.invoice_line_id not in (select invoice_line_id from {{ ref('int_in_advance_fees') }})
        and not lines.is_progressive_billing
        -- a correction bills a difference of two amounts (int_invoice_corrections)
        and lines.corrected_invoice_line_id is null
        and lines.precise_amount <> {{ to_precise_money('lines.quantity * tiers.per_unit_amount') }})
