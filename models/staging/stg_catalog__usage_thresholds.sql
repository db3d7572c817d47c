-- One row per usage threshold of a plan (progressive billing, docs/invoice-amounts.md): fixed
-- amounts of period-to-date usage, and at most one recurring step beyond the largest of them.
with source as (
    select * from {{ source('catalog', 'usage_thresholds') }}
),

final as (
    select
        source.plan_code,
        source.position as threshold_position,
        {{ to_precise_money('source.threshold_amount') }} as threshold_amount,
        source.is_recurring,
        source.threshold_name
    from source
)

select * from final
