-- One row per tax rate (docs/invoice-amounts.md). The rate is in percent.
with source as (
    select * from {{ source('catalog', 'taxes') }}
),

final as (
    select
        source.tax_code,
        source.name as tax_name,
        {{ to_precise_money('source.rate') }} as tax_rate,
        source.description
    from source
)

select * from final
