-- One row per accepted raw event (duplicates included), renamed for the models.
with source as (
    select * from {{ source('raw', 'events') }}
),

final as (
    select
        source.event_id,
        source.transaction_id,
        source.external_subscription_id,
        source.external_customer_id,
        source.metric_code,
        source.event_at,
        source.properties,
        source.loaded_at,
        source.batch_id,
        source.source_file,
        source.source_row,
        -- Duplicates are keyed per subscription (or per customer when only that is given).
        coalesce('sub:' || source.external_subscription_id, 'cus:' || source.external_customer_id)
            as event_owner_key
    from source
)

select * from final
