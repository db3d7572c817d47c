-- One row per purchase of credits (wallets.yml): an invoice of its own for credits x rate,
-- issued when the credits are added. Purchases are neither discounted nor taxed (tax is
-- charged when the credits pay for fees, as credits are spent after tax) and never paid by
-- credits. Same columns as int_fees, so the invoice marts read both.
with credits as (
    select * from {{ ref('int_wallet_credits') }}
),

wallets as (
    select * from {{ ref('stg_catalog__wallets') }}
),

currencies as (
    select * from {{ ref('currencies') }}
),

final as (
    select
        {{ dbt.hash("'credit_purchase|' || credits.wallet_credit_id") }} as invoice_line_id,
        {{ dbt.hash("'credit_purchase_invoice|' || credits.wallet_credit_id") }} as invoice_id,
        'credit_purchase' as fee_kind,
        cast(null as {{ dbt.type_string() }}) as billing_period_id,
        cast(null as {{ dbt.type_string() }}) as subscription_id,
        credits.customer_id,
        cast(null as {{ dbt.type_string() }}) as plan_code,
        cast(null as {{ dbt.type_string() }}) as base_plan_code,
        cast(null as {{ dbt.type_string() }}) as charge_id,
        cast(null as {{ dbt.type_string() }}) as metric_code,
        cast(null as {{ dbt.type_string() }}) as charge_model,
        wallets.wallet_name || ' top-up' as description,
        cast(null as {{ dbt.type_string() }}) as group_key,
        credits.currency,
        currencies.minor_unit,
        credits.credited_at as service_start_at,
        credits.credited_at as service_end_at,
        cast({{ from_utc('credits.credited_at', 'wallets.billing_timezone') }} as date) as service_start_date,
        cast({{ from_utc('credits.credited_at', 'wallets.billing_timezone') }} as date) as service_last_date,
        credits.credited_at as invoice_at,
        cast(credits.credits as {{ quantity_type() }}) as units,
        0 as event_count,
        cast(1 as {{ precise_money_type() }}) as proration_factor,
        credits.amount as precise_amount,
        {{ round_money('credits.amount', 'currencies.minor_unit') }} as amount
    from credits
    inner join wallets
        on credits.wallet_id = wallets.wallet_id
    inner join currencies
        on credits.currency = currencies.currency_code
    where credits.credit_kind = 'purchased'
)

select * from final
