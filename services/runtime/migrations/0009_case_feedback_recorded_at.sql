-- When the tracker recorded each feedback on its case (the commit's moment, near enough): the pipeline's
-- end for latency measurements and for operators asking "when did this message land on a case?".
ALTER TABLE tracker.case_feedback ADD COLUMN recorded_at timestamptz NOT NULL DEFAULT clock_timestamp();
