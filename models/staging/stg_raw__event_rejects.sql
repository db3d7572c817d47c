-- One row per rejected input record, with the reason it was rejected.
with source as (
    select * from {{ source('raw', 'event_rejects') }}
),

final as (
    select
        source.batch_id || '-' || cast(source.source_row as {{ dbt.type_string() }}) as rejected_record_id,
        source.batch_id,
        source.source_file,
        source.source_row,
        source.loaded_at,
        source.reason_code,
        source.reason_detail,
        source.raw_record,
        source.transaction_id,
        source.external_subscription_id,
        source.external_customer_id,
        source.metric_code
    from source
)

select * from final
