{{ config(meta={'dagster': {'ref': {'name': 'fct_invoice_lines'}}}) }}
-- Lineage is complete. A failure means an event was matched to an invoice line that does not
-- exist, so it would be counted as billed without being on any invoice.
select matched.event_id, matched.invoice_line_id
from {{ ref('int_events_matched') }} as matched
left join {{ ref('fct_invoice_lines') }} as lines
    on matched.invoice_line_id = lines.invoice_line_id
where matched.invoice_line_id is not null
    and lines.invoice_line_id is null
