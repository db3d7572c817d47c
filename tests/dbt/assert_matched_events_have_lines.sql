{{ config(tags=['blocking'], meta={'dagster': {'ref': {'name': 'fct_invoice_lines'}}}) }}
-- Lineage is complete. A failure means an event is billed on an invoice line (or credit note)
-- that does not exist, so it would be counted as billed without being on any invoice.
select billed.event_id, billed.invoice_line_id
from {{ ref('fct_invoice_line_events') }} as billed
left join {{ ref('fct_invoice_lines') }} as lines
    on billed.billed_on = 'invoice_line'
    and billed.invoice_line_id = lines.invoice_line_id
left join {{ ref('fct_credit_notes') }} as credit_notes
    on billed.billed_on = 'credit_note'
    and billed.invoice_line_id = credit_notes.credit_note_id
where lines.invoice_line_id is null
    and credit_notes.credit_note_id is null
