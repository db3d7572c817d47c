{{ config(tags=['blocking'], meta={'dagster': {'ref': {'name': 'fct_invoice_lines'}}}) }}
-- Lineage is complete. A failure means events are billed on an invoice line (or credit note)
-- that does not exist, so they would be counted as billed without being on any invoice.
select placements.rated_on_invoice_line_id, placements.loaded_at, placements.invoice_line_id
from {{ ref('int_line_event_placements') }} as placements
left join {{ ref('fct_invoice_lines') }} as lines
    on placements.billed_on = 'invoice_line'
    and placements.invoice_line_id = lines.invoice_line_id
left join {{ ref('fct_credit_notes') }} as credit_notes
    on placements.billed_on = 'credit_note'
    and placements.invoice_line_id = credit_notes.credit_note_id
where lines.invoice_line_id is null
    and credit_notes.credit_note_id is null
