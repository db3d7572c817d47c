-- One row per invoice: a customer's fees invoiced at one instant (a period boundary), with
-- each step of the computation order of docs/invoice-amounts.md: fees - progressive billing
-- already invoiced - discounts = subtotal excluding taxes; + taxes = subtotal including taxes;
-- - credit notes' credits - prepaid credits = total due. Every step is in rounded money.
-- Kind: `subscription` (a period's fees), `progressive_billing` (usage so far, when a usage
-- threshold is reached), `one_off` (add-ons), `credit_purchase` (wallet credits bought) or
-- `correction` (only corrections of finalised lines for late events, when no later invoice takes them).
-- Status (docs/invoice-lifecycle.md): `draft` while the invoice's date is after the run's
-- as_of (usage still accrues); `closed` once it has passed, still recomputed on every run
-- until it is finalised (during its grace period, or until the next finalisation); then
-- `finalized` (numbered; its row comes from the ledger and never changes again) or `voided`.
{%- set columns = ['invoice_id', 'status', 'invoice_number', 'invoice_kind', 'customer_id', 'customer_name',
    'billing_entity_code', 'currency', 'invoice_at', 'issuing_date', 'period_start', 'period_end', 'fees_amount',
    'progressive_billing_credit_amount', 'discount_amount', 'subtotal_excluding_taxes', 'tax_amount',
    'subtotal_including_taxes', 'credit_note_credit_amount', 'prepaid_credit_amount', 'total_amount', 'line_count', 'event_count',
    'computed_as_of', 'grace_period_ends_at', 'finalized_at', 'voided_at'] %}
with lines as (
    select * from {{ ref('fct_invoice_lines') }}
),

discounts as (
    select * from {{ ref('fct_invoice_discounts') }}
),

taxes as (
    select * from {{ ref('fct_invoice_taxes') }}
),

wallet_credits as (
    select * from {{ ref('fct_invoice_wallet_credits') }}
),

credit_note_credits as (
    select * from {{ ref('fct_invoice_credit_note_credits') }}
),

customers as (
    select * from {{ ref('stg_catalog__customers') }}
),

issued as (
    select * from {{ ref('stg_ledger__invoices') }}
),

invoice_fees as (
    select
        lines.invoice_id,
        lines.customer_id,
        lines.currency,
        lines.invoice_at,
        -- The invoice's period is the service that ends at its date (usage, arrears fees);
        -- an invoice with only in-advance fees takes the period they pay for.
        coalesce(
            min(case when lines.service_end_at = lines.invoice_at then lines.service_period_start end),
            min(lines.service_period_start)
        ) as period_start,
        coalesce(
            max(case when lines.service_end_at = lines.invoice_at then lines.service_period_end end),
            max(lines.service_period_end)
        ) as period_end,
        case
            when max(case when lines.is_progressive_billing then 1 else 0 end) = 1 then 'progressive_billing'
            when max(case when lines.fee_kind = 'add_on' then 1 else 0 end) = 1 then 'one_off'
            when max(case when lines.fee_kind = 'credit_purchase' then 1 else 0 end) = 1 then 'credit_purchase'
            when min(case when lines.corrected_invoice_line_id is not null then 1 else 0 end) = 1 then 'correction'
            else 'subscription'
        end as invoice_kind,
        cast(sum(lines.amount) as {{ rounded_money_type() }}) as fees_amount,
        cast(sum(lines.progressive_billing_credit_amount) as {{ rounded_money_type() }})
            as progressive_billing_credit_amount,
        count(*) as line_count,
        cast(sum(lines.event_count) as bigint) as event_count
    from lines
    group by 1, 2, 3, 4
),

invoice_discounts as (
    select
        discounts.invoice_id,
        cast(sum(discounts.discount_amount) as {{ rounded_money_type() }}) as discount_amount
    from discounts
    group by 1
),

invoice_taxes as (
    select
        taxes.invoice_id,
        cast(sum(taxes.tax_amount) as {{ rounded_money_type() }}) as tax_amount
    from taxes
    group by 1
),

invoice_credits as (
    select
        wallet_credits.invoice_id,
        cast(sum(wallet_credits.credit_amount) as {{ rounded_money_type() }}) as prepaid_credit_amount
    from wallet_credits
    group by 1
),

invoice_credit_note_credits as (
    select
        credit_note_credits.invoice_id,
        cast(sum(credit_note_credits.credit_amount) as {{ rounded_money_type() }}) as credit_note_credit_amount
    from credit_note_credits
    group by 1
),

amounts as (
    select
        invoice_fees.*,
        coalesce(invoice_credit_note_credits.credit_note_credit_amount, cast(0 as {{ rounded_money_type() }}))
            as credit_note_credit_amount,
        coalesce(invoice_credits.prepaid_credit_amount, cast(0 as {{ rounded_money_type() }})) as prepaid_credit_amount,
        coalesce(invoice_discounts.discount_amount, cast(0 as {{ rounded_money_type() }})) as discount_amount,
        coalesce(invoice_taxes.tax_amount, cast(0 as {{ rounded_money_type() }})) as tax_amount
    from invoice_fees
    left join invoice_discounts
        on invoice_fees.invoice_id = invoice_discounts.invoice_id
    left join invoice_taxes
        on invoice_fees.invoice_id = invoice_taxes.invoice_id
    left join invoice_credits
        on invoice_fees.invoice_id = invoice_credits.invoice_id
    left join invoice_credit_note_credits
        on invoice_fees.invoice_id = invoice_credit_note_credits.invoice_id
),

computed as (
    select
        amounts.invoice_id,
        case when amounts.invoice_at > {{ as_of_timestamp() }} then 'draft' else 'closed' end as status,
        cast(null as {{ dbt.type_string() }}) as invoice_number,
        amounts.invoice_kind,
        amounts.customer_id,
        customers.customer_name,
        customers.billing_entity_code,
        amounts.currency,
        amounts.invoice_at,
        cast({{ from_utc('amounts.invoice_at', 'customers.billing_timezone') }} as date) as issuing_date,
        amounts.period_start,
        amounts.period_end,
        amounts.fees_amount,
        amounts.progressive_billing_credit_amount,
        amounts.discount_amount,
        cast(amounts.fees_amount - amounts.progressive_billing_credit_amount - amounts.discount_amount
             as {{ rounded_money_type() }}) as subtotal_excluding_taxes,
        amounts.tax_amount,
        cast(amounts.fees_amount - amounts.progressive_billing_credit_amount - amounts.discount_amount
             + amounts.tax_amount as {{ rounded_money_type() }}) as subtotal_including_taxes,
        amounts.credit_note_credit_amount,
        amounts.prepaid_credit_amount,
        cast(amounts.fees_amount - amounts.progressive_billing_credit_amount - amounts.discount_amount
             + amounts.tax_amount - amounts.credit_note_credit_amount - amounts.prepaid_credit_amount
             as {{ rounded_money_type() }}) as total_amount,
        cast(amounts.line_count as bigint) as line_count,
        amounts.event_count,
        {{ as_of_timestamp() }} as computed_as_of,
        cast({{ dbt.dateadd('day', 'customers.invoice_grace_period_days', 'amounts.invoice_at') }} as timestamp)
            as grace_period_ends_at,
        cast(null as timestamp) as finalized_at,
        cast(null as timestamp) as voided_at
    from amounts
    inner join customers
        on amounts.customer_id = customers.customer_id
),

-- A finalised invoice is read from the ledger, as it was issued; its recomputation is dropped.
final as (
    {{ issued_or_computed(columns, issued_invoices='issued') }}
)

select * from final
