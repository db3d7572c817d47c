-- One row per automatic credit note, as computed on this run (fct_credit_notes shows the
-- finalised ones from the ledger instead): unused days of a base fee paid in advance, after an upgrade or a
-- termination inside the period it paid for (docs/billing-calendar.md, "Plan changes"), and
-- usage progressive invoices billed beyond a period's final amount (docs/invoice-amounts.md),
-- and late events that lowered a finalised line (int_invoice_corrections, docs/invoice-lifecycle.md).
-- Each gives back the tax the credited fees bore: the credited amount at their lines' tax rates,
-- rounded once for the note.
with billing_periods as (
    select * from {{ ref('int_billing_periods') }}
),

plans as (
    select * from {{ ref('stg_catalog__plans') }}
),

customers as (
    select * from {{ ref('stg_catalog__customers') }}
),

-- Each invoice line's tax rate (the sum of the rates it bears, in %): as the ledger issued it
-- for a finalised line, as computed for the others.
issued_lines as (
    select * from {{ ref('stg_ledger__invoice_lines') }}
),

computed_rates as (
    select line_taxes.invoice_line_id, sum(line_taxes.tax_rate) as tax_rate
    from {{ ref('int_invoice_line_taxes') }} as line_taxes
    group by 1
),

line_rates as (
    select computed_rates.invoice_line_id, computed_rates.tax_rate
    from computed_rates
    left join issued_lines
        on computed_rates.invoice_line_id = issued_lines.invoice_line_id
    where issued_lines.invoice_line_id is null

    union all

    select issued_lines.invoice_line_id, issued_lines.tax_rate
    from issued_lines
),

-- The line that billed each period's base fee, and its tax rate.
base_fee_lines as (
    select
        fees.billing_period_id,
        max(fees.invoice_id) as invoice_id,
        max(coalesce(line_rates.tax_rate, 0)) as tax_rate
    from {{ ref('int_invoice_fees') }} as fees
    left join line_rates
        on fees.invoice_line_id = line_rates.invoice_line_id
    where fees.fee_kind = 'subscription'
        and fees.corrected_invoice_line_id is null
    group by 1
),

credits as (
    select
        {{ dbt.hash("billing_periods.billing_period_id || '|unused_days'") }} as credit_note_id,
        billing_periods.end_reason as reason,
        billing_periods.customer_id,
        billing_periods.subscription_id,
        billing_periods.billing_period_id,
        billing_periods.plan_code,
        billing_periods.currency,
        billing_periods.minor_unit,
        billing_periods.subscription_ended_at as issued_at,
        billing_periods.unused_start_date as service_period_start,
        billing_periods.fee_period_last_date as service_period_end,
        billing_periods.unused_days,
        billing_periods.fee_days_in_period as days_in_period,
        plans.invoice_display_name || ' (unused days)' as description,
        {{ divide_exactly("plans.base_amount * billing_periods.unused_days", "billing_periods.fee_days_in_period") }}
            as precise_amount,
        {{ percent_of(divide_exactly("plans.base_amount * billing_periods.unused_days",
                                     "billing_periods.fee_days_in_period"),
                      'coalesce(base_fee_lines.tax_rate, 0)') }} as precise_tax_amount,
        cast(null as {{ quantity_type() }}) as quantity,
        base_fee_lines.invoice_id,
        cast(null as {{ dbt.type_string() }}) as corrected_invoice_line_id
    from billing_periods
    inner join plans
        on billing_periods.plan_code = plans.plan_code
    left join base_fee_lines
        on billing_periods.billing_period_id = base_fee_lines.billing_period_id
    where plans.base_amount > 0
        and billing_periods.unused_days > 0
),

-- Usage a period's progressive invoices billed beyond what the period finally costs (a volume
-- price that fell with more units, a latest value that went down): its line cannot deduct more
-- than itself, so the rest is credited back when the period is invoiced.
progressive_fees as (
    select * from {{ ref('int_invoice_fees') }}
    where progressive_billed_amount > progressive_billing_credit_amount
),

overbilled as (
    select
        {{ dbt.hash("billing_periods.billing_period_id || '|progressive_billing'") }} as credit_note_id,
        'progressive_billing_overbilled' as reason,
        billing_periods.customer_id,
        billing_periods.subscription_id,
        billing_periods.billing_period_id,
        billing_periods.plan_code,
        billing_periods.currency,
        billing_periods.minor_unit,
        max(progressive_fees.invoice_at) as issued_at,
        billing_periods.service_start_date as service_period_start,
        billing_periods.service_last_date as service_period_end,
        cast(null as integer) as unused_days,
        cast(null as integer) as days_in_period,
        'Usage billed in advance of the period''s final amount' as description,
        {{ to_precise_money('sum(progressive_fees.progressive_billed_amount - progressive_fees.progressive_billing_credit_amount)') }}
            as precise_amount,
        sum({{ percent_of('progressive_fees.progressive_billed_amount - progressive_fees.progressive_billing_credit_amount',
                          'coalesce(line_rates.tax_rate, 0)') }}) as precise_tax_amount,
        cast(null as {{ quantity_type() }}) as quantity,
        cast(null as {{ dbt.type_string() }}) as invoice_id,
        cast(null as {{ dbt.type_string() }}) as corrected_invoice_line_id
    from progressive_fees
    inner join billing_periods
        on progressive_fees.billing_period_id = billing_periods.billing_period_id
    left join line_rates
        on progressive_fees.invoice_line_id = line_rates.invoice_line_id
    group by 1, 2, 3, 4, 5, 6, 7, 8, 10, 11
),

-- Late events that lowered a finalised line: the difference is credited, when they were loaded.
late_corrections as (
    select
        corrections.correction_id as credit_note_id,
        'late_event_correction' as reason,
        corrections.customer_id,
        corrections.subscription_id,
        corrections.billing_period_id,
        corrections.plan_code,
        corrections.currency,
        corrections.minor_unit,
        corrections.detected_at as issued_at,
        corrections.service_start_date as service_period_start,
        corrections.service_last_date as service_period_end,
        cast(null as integer) as unused_days,
        cast(null as integer) as days_in_period,
        corrections.description,
        {{ to_precise_money('0 - corrections.amount_change') }} as precise_amount,
        {{ percent_of('0 - corrections.amount_change', 'coalesce(line_rates.tax_rate, 0)') }} as precise_tax_amount,
        cast(0 - corrections.units_change as {{ quantity_type() }}) as quantity,
        corrections.corrected_invoice_id as invoice_id,
        corrections.corrected_invoice_line_id
    from {{ ref('int_invoice_corrections') }} as corrections
    left join line_rates
        on corrections.corrected_invoice_line_id = line_rates.invoice_line_id
    where corrections.correction_kind = 'credit_note'
),

every_credit as (
    select * from credits
    union all
    select * from overbilled
    union all
    select * from late_corrections
),

final as (
    select
        credits.credit_note_id,
        case when credits.issued_at > {{ as_of_timestamp() }} then 'draft' else 'closed' end as status,
        cast('automatic' as {{ dbt.type_string() }}) as origin,
        credits.reason,
        -- Automatic credit notes are credited: they pay the customer's later invoices.
        cast('credit' as {{ dbt.type_string() }}) as credit_method,
        credits.customer_id,
        customers.billing_entity_code,
        credits.invoice_id,
        credits.subscription_id,
        credits.billing_period_id,
        credits.plan_code,
        credits.currency,
        credits.issued_at,
        cast({{ from_utc('credits.issued_at', 'customers.billing_timezone') }} as date) as issuing_date,
        credits.service_period_start,
        credits.service_period_end,
        credits.unused_days,
        credits.days_in_period,
        credits.description,
        credits.quantity,
        credits.precise_amount,
        {{ round_money('credits.precise_amount', 'credits.minor_unit') }} as amount,
        {{ round_money('credits.precise_tax_amount', 'credits.minor_unit') }} as tax_amount,
        cast({{ round_money('credits.precise_amount', 'credits.minor_unit') }}
             + {{ round_money('credits.precise_tax_amount', 'credits.minor_unit') }} as {{ rounded_money_type() }})
            as total_amount,
        credits.corrected_invoice_line_id,
        cast({{ dbt.dateadd('day', 'customers.invoice_grace_period_days', 'credits.issued_at') }} as timestamp)
            as grace_period_ends_at
    from every_credit as credits
    inner join customers
        on credits.customer_id = customers.customer_id
)

select * from final
