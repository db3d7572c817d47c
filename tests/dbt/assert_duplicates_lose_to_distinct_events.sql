-- A duplicate names the event that won: the first arrival of its key, which is itself never a
-- duplicate. A failure means the verdicts of two runs disagree (a load judged twice, or against
-- an index that missed a load), and a duplicate could be billed or a distinct event dropped.
select duplicates.event_id, duplicates.winner_event_id
from {{ ref('int_event_duplicates') }} as duplicates
inner join {{ ref('int_event_duplicates') }} as winners
    on duplicates.winner_event_id = winners.event_id
